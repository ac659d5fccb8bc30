//! Inbound protection: oversized bodies refused unread, slow and idle
//! sockets closed, connections and requests in flight capped with a 503,
//! an accept loop that pauses when file descriptors run out, and a real
//! client served while a thousand idle or half-sent sockets hang on.

use crate::support::gateway::{Gateway, Setup, hello};
use crate::support::mock::{Behavior, Mock};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn setup(mock: &Mock) -> Setup {
    Setup::new().provider("up", &mock.base_url(), &[("chat", "m1")])
}

fn address(gateway: &Gateway) -> String {
    gateway.url.trim_start_matches("http://").to_owned()
}

/// Reads what the gateway sends until it closes the socket (or `within`
/// runs out: then `None`).
async fn read_until_closed(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut all = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(String::from_utf8_lossy(&all).into_owned())
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_its_length_before_it_is_read() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock).env("TOLLGATE_MAX_BODY_MIB", "1").start();
    let mut socket = TcpStream::connect(address(&gateway)).await.unwrap();
    // Two MiB announced, none sent: the answer cannot wait for the body.
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2097152\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf))
        .await
        .expect("answered without reading the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");
    // The same on /v1/messages, in Anthropic's shape.
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .header("anthropic-version", "2023-06-01")
                .body(vec![b' '; 2 << 20]),
        )
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.json()["type"], "error");
    assert!(mock.received().is_empty());
}

#[tokio::test]
async fn slow_idle_and_kept_alive_sockets_are_closed() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock)
        .env("TOLLGATE_HEADER_TIMEOUT_S", "1")
        .env("TOLLGATE_KEEP_ALIVE_S", "2")
        .start();
    // A socket that never sends, and one that sends half a head (slowloris).
    let mut silent = TcpStream::connect(address(&gateway)).await.unwrap();
    let mut slow = TcpStream::connect(address(&gateway)).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(4))
            .await
            .is_some()
    );
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(4))
            .await
            .is_some()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A kept-alive connection is closed once it has waited 2 s for its next request.
    let mut kept = TcpStream::connect(address(&gateway)).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(
        read_until_closed(&mut kept, Duration::from_secs(5))
            .await
            .is_some()
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_secs(4),
        "{idle:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_with_retry_after() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock).env("TOLLGATE_MAX_CONNECTIONS", "8").start();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(address(&gateway)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(address(&gateway)).await.unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("TOLLGATE_MAX_CONNECTIONS"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.chat(hello("chat")).await.status, 200);
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_get_a_503_in_their_routes_shape() {
    let mock = Mock::start("up").await;
    // Streams that wait at the mock's gate for as long as the test takes.
    let patient = crate::support::gateway::fragment("up", &mock.base_url(), &[("chat", "m1")], "")
        .replace("idle: 2 }", "idle: 60 }");
    let gateway = Setup::new()
        .file("up.yaml", &patient)
        .enable("up")
        .env("TOLLGATE_MAX_IN_FLIGHT", "2")
        .start();
    mock.set(Behavior::Gated);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let response = gateway
            .post("/v1/chat/completions")
            .json(&serde_json::json!({"model": "chat", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        streams.push(response);
    }
    let reply = gateway.chat(hello("chat")).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.error_message().contains("TOLLGATE_MAX_IN_FLIGHT"));
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .header("anthropic-version", "2023-06-01")
                .json(&serde_json::json!({"model": "chat", "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    // Anthropic's clients know overload as 529, and retry it.
    assert_eq!(reply.status, 529, "{}", reply.text);
    assert_eq!(reply.json()["error"]["type"], "overloaded_error");
    assert_eq!(reply.header("retry-after"), Some("1"));
    // /health still answers: a load balancer must not take the gateway
    // for dead because it is busy.
    assert_eq!(gateway.get("/health").await.status, 200);
    // Each release wakes one stream waiting at the gate (a release before
    // any waits is kept for one only).
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        mock.release();
    }
    for response in streams {
        assert!(response.text().await.unwrap().contains("[DONE]"));
    }
    mock.set(Behavior::Ok);
    assert_eq!(gateway.chat(hello("chat")).await.status, 200);
}

#[tokio::test]
async fn a_thousand_idle_or_half_sent_sockets_do_not_slow_a_real_client() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock).start();
    let timed = async || {
        let started = Instant::now();
        let reply = gateway.chat(hello("chat")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        started.elapsed()
    };
    timed().await;
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(timed().await);
    }
    let mut sockets = Vec::new();
    for i in 0..1000 {
        let mut socket = TcpStream::connect(address(&gateway)).await.unwrap();
        if i % 2 == 1 {
            socket
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-le")
                .await
                .unwrap();
        }
        sockets.push(socket);
    }
    let mut during = Vec::new();
    for _ in 0..20 {
        during.push(timed().await);
    }
    before.sort();
    during.sort();
    let (before, during) = (before[10], during[10]);
    let metrics = gateway.get("/metrics").await.text;
    let open: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tollgate_connections_open "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(open >= 1000.0, "the sockets are open: {open}");
    assert!(
        during < before * 3 + Duration::from_millis(20),
        "median {before:?} before the sockets, {during:?} with them"
    );
    drop(sockets);
    let _: Value = gateway.get("/admin/quotas").await.json();
}

#[tokio::test]
async fn running_out_of_file_descriptors_pauses_accept_instead_of_spinning() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock).capture_logs().start();
    let pid = gateway.pid().to_string();
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=128:128"])
        .status()
        .unwrap();
    assert!(limited.success());
    let mut sockets = Vec::new();
    for _ in 0..200 {
        if let Ok(socket) = TcpStream::connect(address(&gateway)).await {
            sockets.push(socket);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = gateway.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = gateway.cpu_time() - cpu;
    assert!(
        spent < Duration::from_millis(300),
        "accept spun: {spent:?} of CPU in 1 s"
    );
    let logs = gateway.logs();
    assert!(logs.contains("accept failed"), "EMFILE was met: {logs}");
    let warnings = logs.matches("accept failed").count();
    assert!(warnings < 40, "{warnings} accept warnings in about 1.3 s");
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.chat(hello("chat")).await.status, 200);
}

#[tokio::test]
async fn multipart_text_fields_and_parts_have_their_own_limits() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock).start();
    let upload = |form: reqwest::multipart::Form| {
        let form = form.part(
            "file",
            reqwest::multipart::Part::bytes(vec![0u8; 1024]).file_name("a.wav"),
        );
        gateway.send(gateway.post("/v1/audio/transcriptions").multipart(form))
    };
    let long = reqwest::multipart::Form::new()
        .text("model", "chat")
        .text("prompt", "x".repeat(100 << 10));
    let reply = upload(long).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(
        reply
            .error_message()
            .contains("the field `prompt` exceeds 64 KiB")
    );
    let mut many = reqwest::multipart::Form::new().text("model", "chat");
    for i in 0..80 {
        many = many.text(format!("extra{i}"), "1");
    }
    let reply = upload(many).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(reply.error_message().contains("more than 64 parts"));
    assert!(mock.received().is_empty());
}
