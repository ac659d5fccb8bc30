//! Reading an upstream's body, bounded in silence, in time and in size.
//!
//! A body holds a plugin slot, a ledger reservation and perhaps a GPU lease
//! for as long as it lasts, so no provider may keep one open forever: not by
//! going silent (`timeouts.idle`), not by trickling a byte at a time
//! (`timeouts.total`), and not by sending without end (`timeouts.max_mib`
//! for a stream, [`MAX_BODY`] for a body read whole).

use super::{MAX_BODY, UpstreamError};
use crate::config::Timeouts;
use crate::plugins::bindings::UpstreamResponse;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// What is left of one body's allowance: the longest silence, the time by
/// which it must end, and the bytes it may still carry.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    idle: Duration,
    total: Duration,
    ends_by: Instant,
    max_bytes: u64,
    read: u64,
}

impl Pace {
    /// The allowance of a body from `timeouts`, starting now (when its
    /// headers have arrived).
    pub fn new(timeouts: &Timeouts) -> Self {
        let total = timeouts.total();
        Pace {
            idle: timeouts.idle(),
            total,
            ends_by: Instant::now() + total,
            max_bytes: timeouts.max_bytes(),
            read: 0,
        }
    }

    /// Counts `chunk` against the byte cap.
    fn take(&mut self, chunk: &Bytes) -> Result<(), UpstreamError> {
        self.read += chunk.len() as u64;
        if self.read > self.max_bytes {
            return Err(UpstreamError::StreamTooLarge(self.max_bytes));
        }
        Ok(())
    }
}

/// An upstream answer read to its end: the status, the headers, and the
/// body up to [`MAX_BODY`], with why the body could not be read, if so.
pub struct Answer {
    pub response: UpstreamResponse,
    pub body_error: Option<UpstreamError>,
}

impl Answer {
    /// The answer, unless its body could not be read (an answer to translate
    /// must be whole; a failure is classified on what arrived).
    pub fn whole(self) -> Result<UpstreamResponse, UpstreamError> {
        match self.body_error {
            None => Ok(self.response),
            Some(e) => Err(e),
        }
    }

    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = &self.response.headers;
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an upstream response whole, for the adapter or a control step:
/// the one place a response's status, headers and bounded body are taken.
pub async fn read_response(mut response: reqwest::Response, mut pace: Pace) -> Answer {
    let status = response.status().as_u16();
    let headers = headers_of(&response);
    let (body, body_error) = match read_body(&mut response, &mut pace).await {
        Ok(body) => (body, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Answer {
        response: UpstreamResponse {
            status,
            headers,
            body,
        },
        body_error,
    }
}

/// The response headers as (name, value) pairs.
fn headers_of(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// The next piece of the body, or `None` at its end: an error once the
/// body has been silent too long, gone on too long or carried too much.
pub async fn next_chunk(
    response: &mut reqwest::Response,
    pace: &mut Pace,
) -> Result<Option<Bytes>, UpstreamError> {
    let left = pace.ends_by.saturating_duration_since(Instant::now());
    let wait = pace.idle.min(left);
    match tokio::time::timeout(wait, response.chunk()).await {
        Err(_) if wait < pace.idle => Err(UpstreamError::TooLong(pace.total)),
        Err(_) => Err(UpstreamError::IdleTimeout(pace.idle)),
        Ok(Err(e)) => Err(UpstreamError::Transport(super::describe(e))),
        Ok(Ok(Some(chunk))) => {
            pace.take(&chunk)?;
            Ok(Some(chunk))
        }
        Ok(Ok(None)) => Ok(None),
    }
}

/// The whole body, up to [`MAX_BODY`].
async fn read_body(
    response: &mut reqwest::Response,
    pace: &mut Pace,
) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(1 << 20) as usize);
    while let Some(chunk) = next_chunk(response, pace).await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(UpstreamError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
