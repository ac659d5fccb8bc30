//! Inbound protection: the limits that keep a flood of sockets, a slow
//! client or an oversized body from costing the clients being served.
//!
//! Each limit is enforced where it is cheapest. A connection over the cap
//! is answered 503 by the accept loop, before hyper sees it. A socket that
//! sends no request within the header timeout is closed, and so is a kept
//! alive one that waits longer than the keep-alive timeout for its next.
//! A request over the in-flight cap is answered 503 before it is routed,
//! and a body whose `Content-Length` is over the limit is answered 413
//! before a byte of it is read. Both 503s carry `retry-after`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The front door's limits, from the environment (see [`Inbound::from_env`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Open client connections at once (`TOLLGATE_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Requests being served at once, streams until their end
    /// (`TOLLGATE_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// How long a new connection may take to send its first request's
    /// headers (`TOLLGATE_HEADER_TIMEOUT_S`).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request's
    /// headers, idle time included (`TOLLGATE_KEEP_ALIVE_S`).
    pub keep_alive: Duration,
    /// The largest request body, in bytes (`TOLLGATE_MAX_BODY_MIB`): chat
    /// requests may carry inline images. Uploads have their own, larger
    /// limit.
    pub max_body: usize,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            max_connections: 4096,
            max_in_flight: 1024,
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(75),
            max_body: crate::api::limits::DEFAULT_MAX_BODY,
        }
    }
}

/// A bad limit in the environment.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value}: {why}")]
pub struct InboundError {
    name: &'static str,
    value: String,
    why: &'static str,
}

impl Inbound {
    /// The limits, each from its variable when set (`get` reads one).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, InboundError> {
        let mut inbound = Inbound::default();
        let number = |name: &'static str, max: u64| -> Result<Option<u64>, InboundError> {
            let Some(value) = get(name) else {
                return Ok(None);
            };
            match value.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(InboundError {
                    name,
                    value,
                    why: "must be a whole number above 0 (and not absurdly large)",
                }),
            }
        };
        if let Some(n) = number("TOLLGATE_MAX_CONNECTIONS", 1 << 20)? {
            inbound.max_connections = n as usize;
        }
        if let Some(n) = number("TOLLGATE_MAX_IN_FLIGHT", 1 << 20)? {
            inbound.max_in_flight = n as usize;
        }
        if let Some(s) = number("TOLLGATE_HEADER_TIMEOUT_S", 3600)? {
            inbound.header_timeout = Duration::from_secs(s);
        }
        if let Some(s) = number("TOLLGATE_KEEP_ALIVE_S", 86_400)? {
            inbound.keep_alive = Duration::from_secs(s);
        }
        if let Some(mib) = number("TOLLGATE_MAX_BODY_MIB", 4096)? {
            inbound.max_body = (mib as usize) << 20;
        }
        Ok(inbound)
    }
}

impl Inbound {
    /// Makes `max_body` the limit every body reader applies.
    pub fn install(&self) {
        crate::api::limits::set_max_body(self.max_body);
    }
}

/// Answers a connection over the cap with a 503 and closes it, without
/// reading its request: the cheapest answer that still tells a client when
/// to come back.
pub async fn refuse(mut stream: TcpStream, open: usize) {
    let body = format!(
        r#"{{"error":{{"message":"the gateway has {open} connections open, its limit (TOLLGATE_MAX_CONNECTIONS); retry shortly","type":"server_error","param":null,"code":"overloaded"}}}}"#
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

/// How long the accept loop should pause after `error`: resource
/// exhaustion (no file descriptors, no memory for buffers) lasts until
/// connections close, so retrying at once only spins; an error that
/// belongs to one connection (reset before it was accepted) does not.
pub fn accept_pause(error: &io::Error) -> Option<Duration> {
    match error.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::Interrupted
        | io::ErrorKind::WouldBlock => None,
        _ => Some(Duration::from_millis(100)),
    }
}

/// Whether a connection has sent a request yet: set by the service on
/// each request, read by [`first_request_deadline`].
#[derive(Debug, Default, Clone)]
pub struct Started(Arc<AtomicBool>);

impl Started {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Resolves when a connection has sent no request within `timeout` (it is
/// then closed); never resolves once it has. hyper's own header timeout
/// covers the requests after the first.
pub async fn first_request_deadline(started: Started, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if started.0.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_come_from_the_environment() {
        assert_eq!(Inbound::from_env(|_| None).unwrap(), Inbound::default());
        let set = |name: &str| match name {
            "TOLLGATE_MAX_CONNECTIONS" => Some("10".to_owned()),
            "TOLLGATE_KEEP_ALIVE_S" => Some("5".to_owned()),
            "TOLLGATE_MAX_BODY_MIB" => Some("1".to_owned()),
            _ => None,
        };
        let inbound = Inbound::from_env(set).unwrap();
        assert_eq!(inbound.max_connections, 10);
        assert_eq!(inbound.keep_alive, Duration::from_secs(5));
        assert_eq!(inbound.max_body, 1 << 20);
        let bad = Inbound::from_env(|n| (n == "TOLLGATE_MAX_IN_FLIGHT").then(|| "0".into()));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("TOLLGATE_MAX_IN_FLIGHT=0")
        );
    }

    #[test]
    fn only_exhaustion_pauses_the_accept_loop() {
        let emfile = io::Error::from_raw_os_error(24);
        assert_eq!(accept_pause(&emfile), Some(Duration::from_millis(100)));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(accept_pause(&aborted), None);
    }
}
