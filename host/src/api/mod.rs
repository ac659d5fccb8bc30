//! OpenAI's wire shapes on the client side: error bodies and JSON responses.
//!
//! Every error a client sees is `{"error": {"message", "type", "code"}}` with
//! the status that matches it, so OpenAI SDKs raise their usual exceptions.

pub mod limits;
pub mod uploads;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response: whole or streamed. Not `Sync`: a
/// streamed body owns its plugin instance, and hyper never shares a body.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    typed_response(status, "application/json", body)
}

/// A whole response with the given status and content type.
pub fn typed_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault (`messages[0].content`), as OpenAI names it.
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// A 502: an upstream failed in a way the client cannot fix. Every
    /// gateway error of this kind is made here, so they share a type.
    pub fn bad_gateway(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or wrong API key: send the gateway's master key as `Authorization: Bearer <key>` or `x-api-key: <key>`",
        )
    }

    pub fn model_not_found(alias: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "the model `{alias}` does not exist or its provider is not enabled; GET /v1/models lists the models you can use"
            ),
        )
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("unknown endpoint: {method} {path}"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} does not accept {method}"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("request body exceeds {} MiB", limit >> 20),
        )
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }

    /// A 503 says when to come back: it is the gateway shedding load, and
    /// a second later is a fair retry.
    pub fn into_response(self) -> Response<Body> {
        let body = self.body().to_string();
        let mut response = json_response(self.status, body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }

    /// A 503: the gateway itself is at a limit of its own.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "overloaded",
            message,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openais_shape() {
        let body = ApiError::model_not_found("gpt-x").body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("gpt-x"));
    }
}
