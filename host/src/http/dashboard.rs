//! The dashboard at `GET /`: one page, built into the binary, with its
//! script and styles inline (no CDN, no build step). It holds no data of
//! its own: every 2 s it reads `/admin/quotas`, `/admin/gpu`,
//! `/admin/plugins` and `/admin/activity` with the master key the operator
//! typed (kept in the tab's `sessionStorage`), so serving it needs no key.

use crate::api::{Body, typed_response};
use hyper::header::{CACHE_CONTROL, HeaderValue};
use hyper::{Response, StatusCode};

const PAGE: &str = include_str!("dashboard.html");

pub fn page() -> Response<Body> {
    let mut response = typed_response(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page runs only its own inline script and reads only this origin.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
        ),
    );
    response
}
