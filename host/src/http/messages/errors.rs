//! Errors in Anthropic's shape, `{"type":"error","error":{"type","message"}}`,
//! with Anthropic's type for each status, so the `anthropic` SDKs raise their
//! usual exceptions (`RateLimitError`, `NotFoundError`…).
//!
//! The router speaks OpenAI's error shape; an error it answers is reshaped
//! here, its status and headers (`retry-after`, `x-tollgate-*`) kept. A 503
//! (every candidate busy or unavailable) becomes Anthropic's 529
//! `overloaded_error`, which its clients retry with backoff.

use crate::api::{ApiError, Body, full};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// Anthropic's status for overloaded, which `http` has no name for.
const OVERLOADED: u16 = 529;

/// Anthropic's error type for a status.
pub fn kind(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | OVERLOADED => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// The error body for `status`.
pub fn body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind(status), "message": message}})
}

/// A gateway error (parsed before any provider was called) in Anthropic's shape.
pub fn response(error: &ApiError) -> Response<Body> {
    let status = anthropic_status(error.status);
    let body = body(status.as_u16(), &error.message).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The gateway shedding load says when to come back, as on OpenAI routes.
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// Reshapes the router's OpenAI-shaped error answer.
pub async fn reshape(response: Response<Body>) -> Response<Body> {
    let (mut parts, answer) = response.into_parts();
    let bytes = answer
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = message_of(&bytes);
    parts.status = anthropic_status(parts.status);
    let body = body(parts.status.as_u16(), &message).to_string();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, full(body))
}

/// The `error.message` of an OpenAI error body, or the body as text.
pub fn message_of(bytes: &Bytes) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

fn anthropic_status(status: StatusCode) -> StatusCode {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        StatusCode::from_u16(OVERLOADED).unwrap_or(status)
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_get_anthropics_types() {
        assert_eq!(kind(400), "invalid_request_error");
        assert_eq!(kind(401), "authentication_error");
        assert_eq!(kind(404), "not_found_error");
        assert_eq!(kind(429), "rate_limit_error");
        assert_eq!(kind(500), "api_error");
        assert_eq!(kind(502), "api_error");
        assert_eq!(kind(529), "overloaded_error");
        let error = response(&ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "x",
            "y",
            "busy",
        ));
        assert_eq!(error.status().as_u16(), 529);
    }
}
