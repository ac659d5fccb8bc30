//! Answers relayed as the provider gave them, for a client request an
//! adapter took in the client's own protocol (WIT `native`): an Anthropic
//! Messages request to an Anthropic provider goes there and back
//! untranslated.
//!
//! The host still owns the attempt: the ledger reads the usage out of the
//! answer as it passes (through the protocol's [`Protocol::usage`]), a
//! failure before the first byte falls back to the next candidate, and a
//! stream that breaks off after it ends with the protocol's own error
//! event.

use super::Gateway;
use super::hold::{Failed, Hold};
use crate::api::{Body, json_response};
use crate::config::Model;
use crate::ledger::Outcome;
use crate::plugins::bindings::{FailureKind, ResponseKind};
use crate::redact::Redactor;
use crate::upstream::{self, Pace};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

/// What the host must know of a client protocol to relay its answers
/// untouched. Each inbound protocol module defines its own.
pub struct Protocol {
    /// Its name in the WIT `native` interface: `anthropic-messages`.
    pub name: &'static str,
    /// Adds what one JSON object of an answer (the whole body, or one
    /// event's data) says of usage to the (prompt, completion) so far.
    pub usage: fn(&Value, &mut Option<(u64, u64)>),
    /// The event that ends a stream the provider broke off.
    pub error_event: fn(&str) -> Bytes,
}

/// A client request kept as the client sent it, for an adapter that takes
/// its protocol as it is. The router still routes on the chat translation
/// beside it (for candidates that do not).
pub struct NativeRequest {
    pub protocol: &'static Protocol,
    /// The client's headers of that protocol (never its credentials).
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub stream: bool,
}

/// Marks a response relayed untranslated, so that the inbound protocol
/// module passes it on as it is (a response extension, never sent).
#[derive(Debug, Clone, Copy)]
pub struct Untranslated;

impl Gateway {
    /// Relays a native answer: whole, or as a stream once its first bytes
    /// have come (a failure before them falls back).
    pub(super) async fn native_answer(
        &self,
        model: &Model,
        native: &NativeRequest,
        kind: ResponseKind,
        response: reqwest::Response,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let pace = Pace::new(&model.provider.timeouts);
        if kind != ResponseKind::EventStream {
            return self.native_whole(model, native, response, hold, pace).await;
        }
        let mut relay = NativeRelay {
            response,
            pace,
            protocol: native.protocol,
            alias: model.alias.clone(),
            redactor: self.redactor.clone(),
            hold: hold.take(),
            usage: None,
            buffer: BytesMut::new(),
            over: false,
        };
        let first = match upstream::next_chunk(&mut relay.response, &mut relay.pace).await? {
            Some(bytes) if !bytes.is_empty() => bytes,
            _ => {
                *hold = relay.hold.take();
                return Err(Failed::next(
                    FailureKind::Server,
                    "the upstream closed the stream without sending anything",
                ));
            }
        };
        relay.scan(&first);
        Ok(relay.into_response(first))
    }

    async fn native_whole(
        &self,
        model: &Model,
        native: &NativeRequest,
        response: reqwest::Response,
        hold: &mut Hold,
        pace: Pace,
    ) -> Result<Response<Body>, Failed> {
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let answer = upstream::read_response(response, pace).await.whole()?;
        let mut usage = None;
        if let Ok(value) = serde_json::from_slice::<Value>(&answer.body) {
            (native.protocol.usage)(&value, &mut usage);
        }
        tracing::debug!(alias = %model.alias, ?usage, "native usage");
        hold.settle(Outcome::Served { usage }).await;
        let mut out = json_response(StatusCode::OK, answer.body);
        if let Some(content_type) = content_type {
            out.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        out.extensions_mut().insert(Untranslated);
        Ok(out)
    }
}

/// Carries a native event stream to the client byte for byte, reading
/// the usage out of its events on the way.
struct NativeRelay {
    response: reqwest::Response,
    pace: Pace,
    protocol: &'static Protocol,
    alias: String,
    redactor: Redactor,
    hold: Hold,
    usage: Option<(u64, u64)>,
    /// Bytes of an event not yet whole.
    buffer: BytesMut,
    over: bool,
}

impl NativeRelay {
    fn into_response(self, first: Bytes) -> Response<Body> {
        let start = futures_util::stream::once(async move { Ok(Frame::data(first)) });
        let rest = futures_util::stream::unfold(self, |mut relay| async move {
            let frame = relay.next().await?;
            Some((Ok(Frame::data(frame)), relay))
        });
        let frames = futures_util::StreamExt::chain(start, rest);
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response.extensions_mut().insert(Untranslated);
        response
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.over {
            return None;
        }
        match upstream::next_chunk(&mut self.response, &mut self.pace).await {
            Ok(Some(bytes)) => {
                self.scan(&bytes);
                Some(bytes)
            }
            Ok(None) => {
                self.over = true;
                self.hold
                    .settle(Outcome::Served { usage: self.usage })
                    .await;
                self.hold.stream_ended(true);
                crate::lanes::busy();
                None
            }
            Err(e) => {
                self.over = true;
                self.hold
                    .settle(Outcome::Served { usage: self.usage })
                    .await;
                self.hold.stream_ended(false);
                let reason = self.redactor.scrub(&e.to_string());
                tracing::warn!(alias = %self.alias, "native stream failed after it started: {reason}");
                let message = format!(
                    "the upstream stream from `{}` broke off: {reason}",
                    self.alias
                );
                Some((self.protocol.error_event)(&message))
            }
        }
    }

    /// Reads the usage out of every event these bytes complete.
    fn scan(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let event = self.buffer.split_to(end + 2);
            for line in event[..].split(|&b| b == b'\n') {
                if let Some(data) = line.strip_prefix(b"data:")
                    && let Ok(value) = serde_json::from_slice::<Value>(data)
                {
                    (self.protocol.usage)(&value, &mut self.usage);
                }
            }
        }
    }
}
