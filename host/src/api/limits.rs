//! The request body limit every body reader applies, and the lingering
//! read of a body refused by its length.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The largest request body, as [`set_max_body`] set it (the front door's
/// `TOLLGATE_MAX_BODY_MIB`): read where bodies are read, which is
/// everywhere a route takes one.
static MAX_BODY: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_BODY);

/// The body limit when `TOLLGATE_MAX_BODY_MIB` is not set: 32 MiB, for
/// chat requests that carry inline images.
pub const DEFAULT_MAX_BODY: usize = 32 << 20;

pub fn set_max_body(bytes: usize) {
    MAX_BODY.store(bytes, Ordering::Relaxed);
}

/// The largest request body the gateway reads, in bytes.
pub fn max_body() -> usize {
    MAX_BODY.load(Ordering::Relaxed)
}

/// How long, and how much of, a refused body is read and thrown away.
const DISCARD_FOR: Duration = Duration::from_secs(10);
const DISCARD_BYTES: u64 = 64 << 20;

/// Reads what the client still sends of a body refused by its length, and
/// throws it away, as nginx's lingering close does: the 413 goes out at
/// once, and a client that is still writing its body (most send it whole
/// before they read) then reads it rather than a broken pipe. A body too
/// long or too slow to throw away is cut off.
pub fn discard(body: hyper::body::Incoming) {
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DISCARD_BYTES {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DISCARD_FOR, drain).await;
    });
}
