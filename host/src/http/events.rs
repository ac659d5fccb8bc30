//! Re-framing the router's OpenAI chat event stream as another protocol's
//! events (Anthropic Messages, OpenAI Responses), chunk by chunk as the
//! relay hands them over: nothing is buffered beyond one event.
//!
//! The relay ends every stream with `data: [DONE]` or, when the provider
//! broke off after the first byte, with an OpenAI error event; a body that
//! ends without either is treated as the latter, so a client always gets
//! its protocol's end or its error event, never a hang.

use crate::api::{Body, full};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use std::collections::VecDeque;

/// One protocol's view of an OpenAI chat stream.
pub trait Convert: Send + 'static {
    /// One `chat.completion.chunk`.
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>);
    /// The stream ended normally (`[DONE]`).
    fn done(&mut self, out: &mut Vec<Bytes>);
    /// The stream broke off after it started.
    fn error(&mut self, message: &str, out: &mut Vec<Bytes>);
}

/// The (prompt, completion) usage a chunk reports, if it reports one
/// (the last chunk, when `stream_options.include_usage` was asked).
pub fn usage_of(chunk: &Value) -> Option<(u64, u64)> {
    let usage = chunk.get("usage").filter(|u| u.is_object())?;
    Some((
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    ))
}

/// One server-sent event: `event: KIND` and its JSON data.
pub fn frame(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The router's streamed answer, its events converted by `converter`; its
/// status and headers are kept.
pub fn convert(response: Response<Body>, converter: impl Convert) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let state = State {
        body,
        buffer: BytesMut::new(),
        pending: VecDeque::new(),
        converter,
        over: false,
    };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        let frame = state.next().await?;
        Some((Ok(Frame::data(frame)), state))
    });
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    Response::from_parts(parts, BodyExt::boxed_unsync(StreamBody::new(frames)))
}

struct State<C> {
    body: Body,
    buffer: BytesMut,
    pending: VecDeque<Bytes>,
    converter: C,
    /// The end or the error has been converted: nothing more to read.
    over: bool,
}

impl<C: Convert> State<C> {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.over {
                return None;
            }
            let mut out = Vec::new();
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                        self.events(&mut out);
                    }
                }
                Some(Err(e)) => {
                    self.over = true;
                    self.converter.error(&e.to_string(), &mut out);
                }
                None => {
                    self.over = true;
                    self.converter
                        .error("the stream ended before it was complete", &mut out);
                }
            }
            self.pending.extend(out);
        }
    }

    /// Converts every whole event in the buffer.
    fn events(&mut self, out: &mut Vec<Bytes>) {
        while !self.over {
            let Some(end) = find(&self.buffer, b"\n\n") else {
                return;
            };
            let event = self.buffer.split_to(end + 2);
            let Some(data) = data_of(&event) else {
                continue;
            };
            if data == b"[DONE]" {
                self.over = true;
                self.converter.done(out);
                return;
            }
            let Ok(value) = serde_json::from_slice::<Value>(data) else {
                continue;
            };
            if value.get("choices").is_none()
                && let Some(error) = value.get("error")
            {
                self.over = true;
                let message = error["message"].as_str().unwrap_or("the stream failed");
                self.converter.error(message, out);
                return;
            }
            self.converter.chunk(&value, out);
        }
    }
}

/// The `data:` payload of one event (the relay writes one line).
fn data_of(event: &[u8]) -> Option<&[u8]> {
    event
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"data:"))
        .map(|data| data.strip_prefix(b" ").unwrap_or(data))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A whole (non-streamed) body read back, for converting an answer.
pub async fn read(body: Body) -> Bytes {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// A response with a new JSON body, the status and headers of `parts` kept.
pub fn with_json(mut parts: hyper::http::response::Parts, body: &Value) -> Response<Body> {
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, full(body.to_string()))
}

/// Whether the router answered with an event stream.
pub fn is_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes what it was given, one line each.
    struct Echo;

    impl Convert for Echo {
        fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
            out.push(Bytes::from(format!("chunk {}\n", chunk["n"])));
        }
        fn done(&mut self, out: &mut Vec<Bytes>) {
            out.push(Bytes::from_static(b"done\n"));
        }
        fn error(&mut self, message: &str, out: &mut Vec<Bytes>) {
            out.push(Bytes::from(format!("error {message}\n")));
        }
    }

    async fn run(pieces: &[&'static str]) -> String {
        let stream = futures_util::stream::iter(
            pieces
                .iter()
                .map(|p| {
                    Ok::<_, crate::api::BodyError>(Frame::data(Bytes::from_static(p.as_bytes())))
                })
                .collect::<Vec<_>>(),
        );
        let response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        let converted = convert(response, Echo);
        String::from_utf8(read(converted.into_body()).await.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn events_split_across_frames_are_joined() {
        let chunk = json!({"n": 1, "choices": []}).to_string();
        let whole: &'static str =
            Box::leak(format!("data: {chunk}\n\ndata: [DONE]\n\n").into_boxed_str());
        let (a, b) = whole.split_at(7);
        assert_eq!(run(&[a, b]).await, "chunk 1\ndone\n");
    }

    #[tokio::test]
    async fn an_error_event_or_an_early_end_is_an_error() {
        let error = r#"data: {"error":{"message":"broke off"}}

"#;
        assert_eq!(run(&[error]).await, "error broke off\n");
        assert_eq!(
            run(&["data: {\"n\":2,\"choices\":[]}\n\n"]).await,
            "chunk 2\nerror the stream ended before it was complete\n"
        );
    }
}
