//! Carries a committed stream from the provider to the client.
//!
//! The relay *is* the response body: hyper polls it on the client's
//! connection task, and each poll reads the next upstream chunk, has the
//! adapter translate it and hands the frames back. No task or channel sits in
//! between, so a chunk costs no hop between threads (on a small VM each
//! cross-thread wake-up costs tens of microseconds; `just bench` measures the
//! time to the first chunk).
//!
//! When the client goes away, hyper drops the body and with it the upstream
//! response, the plugin instance and the ledger hold, which then keeps the
//! estimate counted (the provider may have served the whole answer).
//!
//! When the adapter sees the provider's `[DONE]` before the provider's body
//! has ended, the rest of that body (the chunked encoding's last chunk) is
//! read in the background after the client's stream is closed. A response
//! dropped unread costs its connection: the next request to that provider
//! would open a new one, with a new TLS handshake.

use super::hold::Hold;
use crate::api::{ApiError, Body};
use crate::ledger::Outcome;
use crate::plugins::StreamSession;
use crate::plugins::bindings::Usage;
use crate::redact::Redactor;
use crate::upstream::{self, Pace};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use std::collections::VecDeque;
use std::time::Duration;

/// Where a relay stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// More is to come from the upstream.
    Reading,
    /// The upstream is done: settle, then send `[DONE]`.
    Ended,
    /// Nothing more to send.
    Closed,
}

pub(crate) struct Relay {
    /// Frames translated but not yet handed to hyper.
    pending: VecDeque<Bytes>,
    phase: Phase,
    translator: StreamSession,
    response: reqwest::Response,
    pace: Pace,
    usage: Option<Usage>,
    alias: String,
    redactor: Redactor,
    /// Settled when the stream ends, however it ends.
    hold: Hold,
    /// The stream ended cleanly while the upstream's body had not: read the
    /// rest, so that its connection goes back to the pool.
    drain_upstream: bool,
}

/// How long the rest of an upstream body is read after the stream has
/// ended. A provider slower than this to end its body loses its connection.
const DRAIN_FOR: Duration = Duration::from_secs(5);
/// How much of it is read: a provider that sends more after its end marker
/// is given up on too.
const DRAIN_BYTES: usize = 64 * 1024;

/// What the router hands over once the first chunk is ready.
pub(crate) struct Committed {
    pub translator: StreamSession,
    pub response: reqwest::Response,
    pub pace: Pace,
    pub usage: Option<Usage>,
    pub alias: String,
    pub redactor: Redactor,
    pub hold: Hold,
    /// The chunks translated so far (at least one).
    pub first: Vec<String>,
    /// Whether the stream already ended (the adapter saw its end, or the
    /// upstream's body ended).
    pub done: bool,
    /// Whether the upstream's body ended.
    pub upstream_ended: bool,
}

impl Relay {
    pub fn new(committed: Committed) -> Self {
        Relay {
            pending: committed.first.iter().map(|c| sse_frame(c)).collect(),
            phase: if committed.done {
                Phase::Ended
            } else {
                Phase::Reading
            },
            translator: committed.translator,
            response: committed.response,
            pace: committed.pace,
            usage: committed.usage,
            alias: committed.alias,
            redactor: committed.redactor,
            hold: committed.hold,
            drain_upstream: committed.done && !committed.upstream_ended,
        }
    }

    /// The client's event-stream response, driven by this relay.
    pub fn into_response(self) -> Response<Body> {
        let frames = futures_util::stream::unfold(self, |mut relay| async move {
            match relay.next_frame().await {
                Some(frame) => Some((Ok(Frame::data(frame)), relay)),
                None => {
                    relay.release_upstream();
                    // The client's next request is likely close behind.
                    crate::lanes::busy();
                    None
                }
            }
        });
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// The next frame for the client, or `None` when the stream is over.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            match self.phase {
                Phase::Reading => self.advance().await,
                Phase::Ended => {
                    self.phase = Phase::Closed;
                    if let Some(usage) = self.usage {
                        tracing::debug!(alias = %self.alias, prompt = usage.prompt_tokens, completion = usage.completion_tokens, "stream usage");
                    }
                    self.hold
                        .settle(Outcome::Served {
                            usage: self.usage_pair(),
                        })
                        .await;
                    self.hold.stream_ended(true);
                    return Some(Bytes::from_static(b"data: [DONE]\n\n"));
                }
                Phase::Closed => return None,
            }
        }
    }

    /// Hands the upstream response back once the client's stream is over:
    /// read to its end in the background when the stream ended before it.
    fn release_upstream(self) {
        if self.drain_upstream {
            tokio::spawn(drain(self.response));
        }
    }

    /// Reads and translates one upstream chunk (or the end of the stream).
    async fn advance(&mut self) {
        let output = match upstream::next_chunk(&mut self.response, &mut self.pace).await {
            Ok(Some(bytes)) => self.translator.push(&bytes).await,
            Ok(None) => {
                self.phase = Phase::Ended;
                self.translator.finish().await
            }
            Err(e) => return self.fail(e.to_string()).await,
        };
        let output = match output {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return self
                    .fail(format!("the adapter rejected the stream: {e}"))
                    .await;
            }
            Err(e) => return self.fail(e.to_string()).await,
        };
        self.usage = output.usage.or(self.usage);
        if output.done && self.phase == Phase::Reading {
            self.phase = Phase::Ended;
            self.drain_upstream = true;
        }
        self.pending
            .extend(output.chunks.iter().map(|chunk| sse_frame(chunk)));
    }

    fn usage_pair(&self) -> Option<(u64, u64)> {
        self.usage.map(|u| (u.prompt_tokens, u.completion_tokens))
    }

    /// Ends a committed stream with an error event the OpenAI SDKs raise.
    async fn fail(&mut self, reason: String) {
        // The provider has served part of it: keep what it reported, or the estimate.
        self.hold
            .settle(Outcome::Served {
                usage: self.usage_pair(),
            })
            .await;
        self.hold.stream_ended(false);
        let reason = self.redactor.scrub(&reason);
        tracing::warn!(alias = %self.alias, "stream failed after it started: {reason}");
        let error = ApiError::bad_gateway(
            "stream_interrupted",
            format!(
                "the upstream stream from `{}` broke off: {reason}",
                self.alias
            ),
        );
        self.pending.push_back(sse_frame(&error.body().to_string()));
        self.phase = Phase::Closed;
    }
}

/// Reads what is left of an upstream body, within [`DRAIN_FOR`] and
/// [`DRAIN_BYTES`], so that hyper can pool its connection again.
async fn drain(mut response: reqwest::Response) {
    let rest = async {
        let mut read = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(DRAIN_FOR, rest).await, Ok(true)) {
        tracing::debug!(
            "the upstream kept sending after its stream ended; its connection is dropped"
        );
    }
}

fn sse_frame(data: &str) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(data.as_bytes());
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// Relays a binary upstream body (speech audio) to the client untouched,
/// chunk by chunk, with the upstream's content type. The hold is settled
/// when the body ends; a body that breaks off aborts the client's
/// transfer, so a truncated file is never taken for a whole one.
pub(crate) struct BinaryRelay {
    pub response: reqwest::Response,
    pub pace: Pace,
    pub alias: String,
    pub redactor: Redactor,
    pub hold: Hold,
}

impl BinaryRelay {
    pub fn into_response(self) -> Response<Body> {
        let content_type = self
            .response
            .headers()
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
        let frames = futures_util::stream::unfold(Some(self), |relay| async move {
            let mut relay = relay?;
            match upstream::next_chunk(&mut relay.response, &mut relay.pace).await {
                Ok(Some(bytes)) => Some((Ok(Frame::data(bytes)), Some(relay))),
                Ok(None) => {
                    relay.hold.settle(Outcome::Served { usage: None }).await;
                    relay.hold.stream_ended(true);
                    crate::lanes::busy();
                    None
                }
                Err(e) => {
                    relay.hold.settle(Outcome::Served { usage: None }).await;
                    relay.hold.stream_ended(false);
                    let reason = relay.redactor.scrub(&e.to_string());
                    tracing::warn!(alias = %relay.alias, "binary body broke off: {reason}");
                    Some((Err(reason.into()), None))
                }
            }
        });
        let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
        response.headers_mut().insert(CONTENT_TYPE, content_type);
        response
    }
}
