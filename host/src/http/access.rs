//! Who may use a route: the master key anywhere, a gateway key on `/v1`,
//! nobody else once either exists. The answer is a [`Caller`] for the
//! router to enforce, or the 401 (or 400, for a bad tiers header) that the
//! route's protocol shapes.
//!
//! | master key | gateway keys | `/v1`                 | `/admin`, `/metrics`  |
//! |------------|--------------|-----------------------|-----------------------|
//! | unset      | none         | open                  | open                  |
//! | set        | none         | master key            | master key            |
//! | unset      | some         | a gateway key         | refused (set one)     |
//! | set        | some         | master or gateway key | master key            |

use crate::api::ApiError;
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::Tier;
use crate::keys::{Caller, constant_time_eq};
use crate::state::AppState;
use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::AUTHORIZATION;

/// The header a request narrows its tiers with: `free,local`.
pub const TIERS_HEADER: &str = "x-tollgate-tiers";

pub fn caller(state: &AppState, headers: &HeaderMap, path: &str) -> Result<Caller, ApiError> {
    let tiers = requested_tiers(headers)?;
    let presented = presented(headers);
    let master = state.master_key.as_ref();
    let is_master = master
        .zip(presented)
        .is_some_and(|(key, given)| constant_time_eq(given.as_bytes(), key.expose().as_bytes()));
    if is_master {
        return Ok(Caller { key: None, tiers });
    }
    let ring = state.keys.peek();
    if !path.starts_with("/v1/") {
        return match (master, ring.is_empty()) {
            (None, true) => Ok(Caller { key: None, tiers }),
            (None, false) => Err(unauthorized(
                "the admin routes take only the master key, and none is set: set TOLLGATE_MASTER_KEY",
            )),
            (Some(_), _) => Err(unauthorized(
                "missing or wrong master key: the admin routes take only TOLLGATE_MASTER_KEY, as `Authorization: Bearer <key>` or `x-api-key: <key>`",
            )),
        };
    }
    if ring.is_empty() {
        return match master {
            None => Ok(Caller { key: None, tiers }),
            Some(_) => Err(ApiError::unauthorized()),
        };
    }
    let Some(presented) = presented else {
        return Err(unauthorized(
            "missing API key: send your gateway key as `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ));
    };
    let Some(key) = ring.find(presented) else {
        return Err(unauthorized("unknown API key"));
    };
    if let Some(at) = key.expires_at
        && SystemClock.now_ms() >= at
    {
        return Err(unauthorized(&format!(
            "the key `{}` expired at {}",
            key.name(),
            rfc3339(at)
        )));
    }
    let tiers = narrow(key.spec.tiers.as_deref(), tiers);
    Ok(Caller {
        key: Some(key.clone()),
        tiers,
    })
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid_api_key",
        message,
    )
}

/// `Authorization: Bearer` (OpenAI clients) or `x-api-key` (Anthropic's).
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .filter(|key| !key.is_empty())
}

fn requested_tiers(headers: &HeaderMap) -> Result<Option<Vec<Tier>>, ApiError> {
    let Some(value) = headers.get(TIERS_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "{TIERS_HEADER} must list tiers separated by commas, from: free, subscription, paid, local"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    text.split(',')
        .map(|name| match name.trim() {
            "free" => Ok(Tier::Free),
            "subscription" => Ok(Tier::Subscription),
            "paid" => Ok(Tier::Paid),
            "local" => Ok(Tier::Local),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A request may only narrow its key's tiers.
fn narrow(key: Option<&[Tier]>, asked: Option<Vec<Tier>>) -> Option<Vec<Tier>> {
    match (key, asked) {
        (Some(key), Some(asked)) => Some(asked.into_iter().filter(|t| key.contains(t)).collect()),
        (Some(key), None) => Some(key.to_vec()),
        (None, asked) => asked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_only_narrows_its_keys_tiers() {
        use Tier::*;
        assert_eq!(
            narrow(Some(&[Free, Local]), Some(vec![Free, Paid])),
            Some(vec![Free])
        );
        assert_eq!(narrow(Some(&[Free]), None), Some(vec![Free]));
        assert_eq!(narrow(None, Some(vec![Paid])), Some(vec![Paid]));
        assert_eq!(narrow(None, None), None);
    }

    #[test]
    fn tiers_headers_are_read_or_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(TIERS_HEADER, "free, local".parse().unwrap());
        assert_eq!(
            requested_tiers(&headers).unwrap(),
            Some(vec![Tier::Free, Tier::Local])
        );
        headers.insert(TIERS_HEADER, "free,gold".parse().unwrap());
        assert_eq!(
            requested_tiers(&headers).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
