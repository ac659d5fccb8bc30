//! The fault matrix: each fault an upstream, a client, a plugin or a reload
//! can bring, what the client gets for it, and that nothing stays open
//! after it (no request in flight, no plugin slot, no connection, no task
//! beyond the gateway's idle level). docs/reliability.md lists the rows.

use crate::reload::eventually;
use crate::support::gateway::{Gateway, Setup, fragment, hello};
use crate::support::mock::{Behavior, Mock};
use serde_json::{Value, json};
use std::time::Duration;

/// Timeouts short enough for a test: a second to the headers and between
/// pieces, two seconds for a whole body, and 4 KiB for a stream.
const TIGHT: &str = "timeouts: { connect: 1, response: 1, idle: 1, total: 2, max_mib: 0.004 }";

fn tight(name: &str, base_url: &str, aliases: &[(&str, &str)], extra: &str) -> String {
    fragment(name, base_url, aliases, extra)
        .replace("timeouts: { connect: 2, response: 2, idle: 2 }", TIGHT)
}

/// A gateway with one provider, `up`, serving `chat` from `base_url`, and
/// the `faulty` plugin's provider beside it.
fn setup(base_url: &str) -> Setup {
    let faulty = tight(
        "faulty",
        base_url,
        &[
            ("trap-chat", "trap"),
            ("spin-chat", "spin"),
            ("hog-chat", "hog"),
            ("garbage-chat", "garbage"),
        ],
        "",
    )
    .replace("adapter: openai", "adapter: faulty");
    Setup::new()
        .file(
            "up.yaml",
            &tight(
                "up",
                base_url,
                &[("chat", "m1")],
                "limits: { tpm: 1000000 }",
            ),
        )
        .enable("up")
        .plugin("faulty", "faulty")
        .file("faulty.yaml", &faulty)
        .enable("faulty")
        .env("TOLLGATE_PLUGIN_DEADLINE_MS", "200")
        .env("TOLLGATE_PLUGIN_MEMORY_MB", "32")
}

/// A client that opens a new connection per request, so that none of its
/// own stays open on the gateway between rows.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// What the gateway has open, from `/metrics`.
#[derive(Debug, PartialEq)]
struct Open {
    connections: i64,
    in_flight: i64,
    plugin_slots: i64,
    tasks: i64,
}

async fn open(gateway: &Gateway) -> Open {
    let url = gateway.url.clone() + "/metrics";
    let text = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("tollgate_{name} ")))
            .unwrap_or_else(|| panic!("no tollgate_{name} in /metrics"))
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    Open {
        connections: gauge("connections_open"),
        in_flight: gauge("requests_in_flight"),
        plugin_slots: gauge("plugin_slots_in_use"),
        tasks: gauge("lane_tasks"),
    }
}

/// Waits until the gateway is back to what it had open when idle: the
/// scrape's own connection and request, and no more tasks than at rest.
async fn nothing_left_open(gateway: &Gateway, idle: &Open, row: &str) {
    let mut last = None;
    let settled = async || {
        let now = open(gateway).await;
        let ok = now.connections == 1
            && now.in_flight == 1
            && now.plugin_slots == 0
            && now.tasks <= idle.tasks;
        last = Some(now);
        ok
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut settled = settled;
    while !settled().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{row}: still open after the fault: {last:?} (idle: {idle:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request as the row sends it: its status, headers and whole body.
async fn send(gateway: &Gateway, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .post(gateway.url.clone() + "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

fn streaming(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// What a row's client must get.
enum Expect {
    /// This status, an OpenAI error body, and these words in its message.
    Error(u16, &'static str),
    /// A 200 stream that ends with an error event holding these words.
    BrokenStream(&'static str),
}

fn check(row: &str, expect: &Expect, status: u16, text: &str) {
    match expect {
        Expect::Error(want, words) => {
            assert_eq!(status, *want, "{row}: {text}");
            let body: Value =
                serde_json::from_str(text).unwrap_or_else(|_| panic!("{row}: {text}"));
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(body["error"]["type"].is_string(), "{row}: {text}");
            assert!(message.contains(words), "{row}: {message}");
        }
        Expect::BrokenStream(words) => {
            assert_eq!(status, 200, "{row}: {text}");
            let last = text
                .split("\n\n")
                .filter_map(|f| f.strip_prefix("data: "))
                .last()
                .unwrap_or_default();
            let event: Value =
                serde_json::from_str(last).unwrap_or_else(|_| panic!("{row}: {text}"));
            let message = event["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(words),
                "{row}: the stream's last event: {last}"
            );
            assert!(
                !text.contains("[DONE]"),
                "{row}: a broken stream is not done"
            );
        }
    }
}

#[tokio::test]
async fn every_upstream_fault_gets_its_answer_and_leaves_nothing_open() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock.base_url()).start();
    assert_eq!(send(&gateway, hello("chat")).await.0, 200);
    let idle = open(&gateway).await;
    let rows: Vec<(&str, Behavior, bool, Expect)> = vec![
        (
            "500",
            Behavior::status(500, r#"{"error":{"message":"boom"}}"#),
            false,
            Expect::Error(502, "boom"),
        ),
        (
            "503",
            Behavior::status(503, "down"),
            false,
            Expect::Error(502, "unavailable (HTTP 503): down"),
        ),
        (
            "reset before the headers",
            Behavior::Reset,
            false,
            Expect::Error(502, "connection"),
        ),
        (
            "stall before the headers",
            Behavior::Stall,
            false,
            Expect::Error(502, "no response within 1s"),
        ),
        (
            "reset mid-stream",
            Behavior::BreakMidStream,
            true,
            Expect::BrokenStream("broke off"),
        ),
        (
            "stall mid-stream",
            Behavior::Gated,
            true,
            Expect::BrokenStream("went silent"),
        ),
        (
            "malformed SSE",
            Behavior::MalformedSse,
            true,
            Expect::Error(502, "not JSON"),
        ),
        (
            "oversized body",
            Behavior::Huge { mib: 65 },
            false,
            Expect::Error(502, "carried more than 4194 bytes"),
        ),
        (
            "a body that never ends",
            Behavior::Trickle,
            false,
            Expect::Error(502, "timeouts.total"),
        ),
        (
            "a stream that never ends",
            Behavior::Trickle,
            true,
            Expect::BrokenStream("timeouts.max_mib"),
        ),
        // Last: its cooldown keeps the model from serving for a while.
        (
            "429 with retry-after",
            Behavior::rate_limited(),
            false,
            Expect::Error(429, "rate limited"),
        ),
    ];
    for (row, behavior, stream, expect) in rows {
        let gated = matches!(behavior, Behavior::Gated);
        mock.set(behavior);
        let body = if stream {
            streaming("chat")
        } else {
            hello("chat")
        };
        let (status, headers, text) = send(&gateway, body).await;
        check(row, &expect, status, &text);
        if row.starts_with("429") {
            assert!(headers.contains_key("retry-after"), "{row}: {headers:?}");
        }
        if gated {
            mock.release();
        }
        nothing_left_open(&gateway, &idle, row).await;
    }
    // Connection refused: the provider's port has nothing listening.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    };
    let refused = setup(&dead).start();
    let idle = open(&refused).await;
    let (status, _, text) = send(&refused, hello("chat")).await;
    check(
        "connection refused",
        &Expect::Error(502, "connect"),
        status,
        &text,
    );
    nothing_left_open(&refused, &idle, "connection refused").await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_and_is_counted() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock.base_url()).start();
    assert_eq!(send(&gateway, hello("chat")).await.0, 200);
    let idle = open(&gateway).await;
    let before = tokens_used(&gateway).await;
    mock.set(Behavior::Trickle);
    let mut response = client()
        .post(gateway.url.clone() + "/v1/chat/completions")
        .json(&streaming("chat"))
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("hello"));
    drop(response);
    eventually("the upstream to be hung up on", async || {
        mock.hung_up() == 1
    })
    .await;
    nothing_left_open(&gateway, &idle, "client disconnect").await;
    let after = tokens_used(&gateway).await;
    assert!(
        after > before,
        "the abandoned stream's tokens count: {before} then {after}"
    );
}

/// The tokens the `up` provider's minute window holds.
async fn tokens_used(gateway: &Gateway) -> f64 {
    let url = gateway.url.clone() + "/admin/quotas";
    let report: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provider"] == "up" && r["window"] == "tpm")
        .and_then(|r| r["used"].as_f64())
        .unwrap_or_else(|| panic!("no tpm row for up: {report}"))
}

#[tokio::test]
async fn every_plugin_fault_fails_its_attempt_and_leaves_nothing_open() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock.base_url()).start();
    assert_eq!(send(&gateway, hello("chat")).await.0, 200);
    let idle = open(&gateway).await;
    for (row, alias, words) in [
        ("a trap", "trap-chat", "deliberate trap"),
        ("an infinite loop", "spin-chat", "exceeded its CPU deadline"),
        ("a memory bomb", "hog-chat", "trapped"),
        ("a malformed return", "garbage-chat", "unusable request"),
    ] {
        let (status, _, text) = send(&gateway, hello(alias)).await;
        check(row, &Expect::Error(502, words), status, &text);
        nothing_left_open(&gateway, &idle, row).await;
    }
    assert_eq!(
        mock.received().len(),
        1,
        "no faulty attempt reached the upstream"
    );
}

#[tokio::test]
async fn a_bad_reload_keeps_what_serves_and_says_why() {
    let mock = Mock::start("up").await;
    let gateway = setup(&mock.base_url()).start();
    let config = gateway.dir().join("providers");
    std::fs::write(
        config.join("up.yaml"),
        "name: up\nadapter: [not, a, name]\n",
    )
    .unwrap();
    eventually("the bad fragment to be reported", async || {
        let report = gateway.get("/admin/plugins").await.json();
        report["config"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("up.yaml"))
    })
    .await;
    assert_eq!(
        send(&gateway, hello("chat")).await.0,
        200,
        "the old config serves"
    );

    let plugins = gateway.dir().join("plugins");
    std::fs::write(plugins.join("faulty.wasm"), b"\0asm garbage").unwrap();
    eventually("the bad plugin to be reported", async || {
        let report = gateway.get("/admin/plugins").await.json();
        report["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "faulty" && p["last_error"].is_string() && p["loaded"] == true)
    })
    .await;
    let (status, _, text) = send(&gateway, hello("trap-chat")).await;
    check(
        "the old plugin still serves",
        &Expect::Error(502, "deliberate trap"),
        status,
        &text,
    );
}

#[tokio::test]
async fn a_damaged_store_is_moved_aside_and_the_gateway_starts_empty() {
    let mock = Mock::start("up").await;
    let mut gateway = setup(&mock.base_url())
        .env("TOLLGATE_MASTER_KEY", "tg-master-0123456789abcdef")
        .capture_logs()
        .start();
    let made = client()
        .post(gateway.url.clone() + "/admin/keys")
        .bearer_auth("tg-master-0123456789abcdef")
        .json(&json!({"name": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    gateway.stop();
    let data = gateway.dir().join("data");
    // The ledger cut short, the keys overwritten.
    let ledger = std::fs::read(data.join("ledger.redb")).unwrap();
    std::fs::write(data.join("ledger.redb"), &ledger[..ledger.len() / 3]).unwrap();
    std::fs::write(data.join("keys.redb"), b"not a database at all").unwrap();
    gateway.start_again();
    let served = client()
        .post(gateway.url.clone() + "/v1/chat/completions")
        .bearer_auth("tg-master-0123456789abcdef")
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let logs = gateway.logs();
    assert_eq!(
        logs.matches("it was moved aside and a new one started empty")
            .count(),
        2,
        "{logs}"
    );
    let aside: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
}
