//! Helpers for the HTTP side of an adapter: headers, URLs, failure classification.

use crate::alloc_prelude::*;
use crate::types::{
    Body, ClientRequest, Credential, Failure, FailureKind, Headers, ResponseKind, UpstreamRequest,
    UpstreamResponse,
};

/// The first value of a header, compared case-insensitively.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// `base` and `path` joined with exactly one slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A JSON `POST` with the key as a bearer token: what most providers want.
pub fn json_post(url: String, body: Vec<u8>, response: ResponseKind) -> UpstreamRequest {
    UpstreamRequest {
        method: "POST".to_owned(),
        url,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Body::Bytes(body),
        credential: Credential::Bearer,
        response,
    }
}

/// How to read the answer to `request`: as an event stream when the client
/// asked for one, else as JSON.
pub fn response_kind(request: &ClientRequest) -> ResponseKind {
    if request.stream {
        ResponseKind::EventStream
    } else {
        ResponseKind::Json
    }
}

/// When the upstream said to come back, in milliseconds: `retry-after-ms`,
/// then `retry-after` as seconds (fractions allowed). HTTP dates are ignored.
pub fn retry_after_ms(headers: &Headers) -> Option<u64> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(ms.max(0.0) as u64);
    }
    header(headers, "retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|secs| (secs.max(0.0) * 1000.0) as u64)
}

/// The upstream's own words: `error.message` (OpenAI, Anthropic), `message`
/// (Cohere), `error` as a string (HuggingFace, Ollama), else the body's start.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = value
            .pointer("/error/message")
            .or_else(|| value.get("message"))
            .or_else(|| value.get("error"))
            .or_else(|| value.get("detail"));
        if let Some(text) = found.and_then(|v| v.as_str()) {
            return text.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The kind of failure an HTTP status means for most providers.
pub fn failure_kind(status: u16, body: &[u8]) -> FailureKind {
    let says = |needle: &str| {
        body.windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    match status {
        402 => FailureKind::QuotaExhausted,
        429 if says("insufficient_quota") => FailureKind::QuotaExhausted,
        429 => FailureKind::RateLimited,
        401 | 403 => FailureKind::Auth,
        400 | 413 | 422 => FailureKind::BadRequest,
        404 => FailureKind::NotFound,
        408 | 409 | 503 | 504 | 529 => FailureKind::Unavailable,
        500..=599 => FailureKind::Server,
        _ => FailureKind::Other,
    }
}

/// Classifies a failed response the way OpenAI-style APIs report failures.
pub fn classify(response: &UpstreamResponse) -> Failure {
    Failure {
        kind: failure_kind(response.status, &response.body),
        message: error_message(&response.body),
        retry_after_ms: retry_after_ms(&response.headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn retry_after_prefers_milliseconds_and_accepts_fractions() {
        assert_eq!(
            retry_after_ms(&headers(&[("Retry-After", "2"), ("retry-after-ms", "150")])),
            Some(150)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "1.5")])),
            Some(1500)
        );
        assert_eq!(
            retry_after_ms(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(failure_kind(429, b"{}"), FailureKind::RateLimited);
        assert_eq!(
            failure_kind(429, br#"{"error":{"code":"insufficient_quota"}}"#),
            FailureKind::QuotaExhausted
        );
        assert_eq!(failure_kind(401, b""), FailureKind::Auth);
        assert_eq!(failure_kind(422, b""), FailureKind::BadRequest);
        assert_eq!(failure_kind(503, b""), FailureKind::Unavailable);
        assert_eq!(failure_kind(500, b""), FailureKind::Server);
    }

    #[test]
    fn error_messages_come_from_each_providers_shape() {
        assert_eq!(
            error_message(br#"{"error":{"message":"slow down"}}"#),
            "slow down"
        );
        assert_eq!(
            error_message(br#"{"message":"cohere says"}"#),
            "cohere says"
        );
        assert_eq!(error_message(br#"{"error":"hf says"}"#), "hf says");
        assert_eq!(error_message(b"  plain text \n"), "plain text");
    }
}
