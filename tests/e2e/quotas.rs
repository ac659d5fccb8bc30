//! Quota ledgers end to end: candidates skipped before they would answer
//! 429, headers and cooldowns learned from upstreams, counts that survive a
//! restart and a crash, and one ledger shared by two gateways through Redis.

use crate::reload::eventually;
use crate::support::gateway::{Gateway, Setup, fragment, hello, run, tollgate};
use crate::support::mock::{Behavior, Mock};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `first-chat` (with `limits`) falling back to an unlimited `second-chat`.
async fn limited_pair(limits: &str) -> (Mock, Mock, Setup) {
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let setup = Setup::new()
        .provider_with("first", &first.base_url(), &[("first-chat", "f1")], limits)
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n");
    (first, second, setup)
}

/// The `/admin/quotas` row for a provider, model and window.
fn quota<'a>(report: &'a Value, model: &str, window: &str) -> &'a Value {
    report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["model"] == model && row["window"] == window)
        .unwrap_or_else(|| panic!("no {model} {window} row in {report}"))
}

#[tokio::test]
async fn a_limited_provider_gets_exactly_its_limit_and_never_answers_429() {
    let (first, second, setup) = limited_pair("limits: { rpm: 3 }").await;
    first.set(Behavior::Limited { per_minute: 3 });
    let gateway = setup.start();
    // Ten concurrent clients, two requests each.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = gateway.client.clone();
        let url = format!("{}/v1/chat/completions", gateway.url);
        tasks.push(tokio::spawn(async move {
            let mut served = Vec::new();
            for _ in 0..2 {
                let response = client
                    .post(&url)
                    .json(&hello("first-chat"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let by = response.headers()["x-tollgate-provider"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let skipped = response
                    .headers()
                    .get("x-tollgate-skipped")
                    .map(|v| v.to_str().unwrap().to_owned());
                served.push((by, skipped));
            }
            served
        }));
    }
    let mut by_first = 0;
    for task in tasks {
        for (by, skipped) in task.await.unwrap() {
            if by == "first-chat" {
                by_first += 1;
            } else {
                assert_eq!(skipped.as_deref(), Some("first-chat:rpm"));
            }
        }
    }
    assert_eq!(by_first, 3);
    assert_eq!(
        first.received().len(),
        3,
        "the limited provider got exactly its limit"
    );
    assert_eq!(first.rejected(), 0, "and never had to answer 429");
    assert_eq!(second.received().len(), 17);

    let report = gateway.get("/admin/quotas").await.json();
    let rpm = quota(&report, "*", "rpm");
    assert_eq!(rpm["provider"], "first");
    assert_eq!(
        (rpm["used"].as_f64(), rpm["remaining"].as_f64()),
        (Some(3.0), Some(0.0))
    );
    assert!(rpm["resets_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_request_too_big_for_the_token_limit_skips_with_the_reason() {
    let (first, second, setup) = limited_pair("limits: { tpm: 200 }").await;
    second.set(Behavior::status(500, "{}"));
    let gateway = setup.start();
    let mut request = hello("first-chat");
    request["max_tokens"] = 500.into();
    let reply = gateway.chat(request).await;
    assert_eq!(reply.status, 502);
    let message = reply.error_message();
    assert!(
        message.contains("first-chat (first): skipped: this request needs about"),
        "{message}"
    );
    assert!(
        message.contains("more than the tpm limit of first"),
        "{message}"
    );
    assert!(first.received().is_empty());
    assert_eq!(reply.header("x-tollgate-attempts"), Some("1"));
    // A small request fits and its real usage (15 tokens) replaces the estimate.
    let mut small = hello("first-chat");
    small["max_tokens"] = 20.into();
    let reply = gateway.chat(small).await;
    assert_eq!(reply.status, 200);
    let report = gateway.get("/admin/quotas").await.json();
    assert_eq!(quota(&report, "*", "tpm")["used"].as_f64(), Some(15.0));
}

#[tokio::test]
async fn rate_limit_headers_correct_the_ledger() {
    headers_correct_the_ledger(None).await;
}

#[tokio::test]
async fn rate_limit_headers_correct_the_shared_ledger() {
    let Some(redis) = Redis::start() else { return };
    headers_correct_the_ledger(Some(&redis.url)).await;
}

async fn headers_correct_the_ledger(ledger: Option<&str>) {
    let (first, _second, mut setup) = limited_pair("limits: { rpd: 100 }").await;
    if let Some(url) = ledger {
        setup = setup.env("TOLLGATE_LEDGER", url);
    }
    // Another app spent this key: the provider says nothing remains for 30 s.
    first.set(Behavior::OkWithHeaders(vec![
        ("x-ratelimit-limit-requests".into(), "100".into()),
        ("x-ratelimit-remaining-requests".into(), "0".into()),
        ("x-ratelimit-reset-requests".into(), "30s".into()),
    ]));
    let gateway = setup.start();
    assert_eq!(
        gateway
            .chat(hello("first-chat"))
            .await
            .header("x-tollgate-provider"),
        Some("first-chat")
    );
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert_eq!(reply.header("x-tollgate-skipped"), Some("first-chat:rpd"));
    assert_eq!(first.received().len(), 1);
    let report = gateway.get("/admin/quotas").await.json();
    let rpd = quota(&report, "*", "rpd");
    assert_eq!(rpd["remaining"].as_f64(), Some(0.0));
    // The provider's stated reset, not midnight.
    let resets = rpd["resets_at"].as_str().unwrap();
    assert_ne!(&resets[11..], "00:00:00Z", "{resets}");
}

/// A provider that declares no limits but reports them in Groq's headers:
/// after the answer that says none remain, the next request goes straight
/// to the next candidate (the reset names a day, or a minute as OpenAI's
/// would).
#[tokio::test]
async fn a_limit_learned_from_headers_is_never_overrun() {
    for reset in ["86400s", "59.5s"] {
        let (first, second, setup) = limited_pair("").await;
        first.set(Behavior::Reporting {
            limit: 3,
            reset: reset.into(),
        });
        let gateway = setup.start();
        let served: Vec<String> = {
            let mut served = Vec::new();
            for _ in 0..5 {
                let reply = gateway.chat(hello("first-chat")).await;
                assert_eq!(reply.status, 200);
                served.push(reply.header("x-tollgate-provider").unwrap().to_owned());
            }
            served
        };
        assert_eq!(
            served,
            [
                "first-chat",
                "first-chat",
                "first-chat",
                "second-chat",
                "second-chat"
            ],
            "reset {reset}"
        );
        assert_eq!(first.rejected(), 0, "an avoidable 429 (reset {reset})");
        assert_eq!(first.received().len(), 3);
        assert_eq!(second.received().len(), 2);
    }
}

#[tokio::test]
async fn a_429_cools_the_model_down_until_its_retry_after() {
    let (first, second, setup) = limited_pair("").await;
    first.set(Behavior::Status {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        body: r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#
            .into(),
    });
    let gateway = setup.start();
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
    first.set(Behavior::Ok);
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert_eq!(
        reply.header("x-tollgate-skipped"),
        Some("first-chat:cooldown")
    );
    assert_eq!(first.received().len(), 1, "no request during the cooldown");
    let report = gateway.get("/admin/quotas").await.json();
    let row = &report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "f1")
        .unwrap()
        .clone();
    assert!(row["cooldown_until"].is_string(), "{report}");

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("first-chat"));
    assert_eq!(second.received().len(), 2);
}

#[tokio::test]
async fn a_429_without_headers_still_cools_down() {
    let (first, second, setup) = limited_pair("").await;
    first.set(Behavior::status(429, r#"{"error":{"message":"busy"}}"#));
    second.set(Behavior::status(429, r#"{"error":{"message":"busy"}}"#));
    let gateway = setup.start();
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 429);
    // Both are cooling down: the client is told when to come back.
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("x-tollgate-attempts"), Some("0"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        reply
            .error_message()
            .contains("cooling down after a 429 without a stated reset")
    );
    assert_eq!(first.received().len() + second.received().len(), 2);
}

#[tokio::test]
async fn a_restarted_gateway_does_not_respend_a_daily_cap() {
    let (first, second, setup) = limited_pair("limits: { rpd: 4 }").await;
    let mut gateway = setup.start();
    for _ in 0..3 {
        assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
    }
    gateway.restart(true);
    for _ in 0..3 {
        assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
    }
    assert_eq!(first.received().len(), 4);
    assert_eq!(second.received().len(), 2);
}

#[tokio::test]
async fn kill_9_under_load_loses_at_most_the_last_second() {
    let (first, _second, setup) = limited_pair("limits: { rpd: 100000 }").await;
    let mut gateway = setup.start();
    let url = format!("{}/v1/chat/completions", gateway.url);
    let client = gateway.client.clone();
    let load = tokio::spawn(async move {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            // Errors are expected once the gateway is killed.
            let _ = client.post(&url).json(&hello("first-chat")).send().await;
        }
    });
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let killed_at = Instant::now();
    gateway.restart(false);
    load.await.unwrap();
    let arrivals = first.arrivals();
    // The old gateway's port is gone with it, so every arrival was its doing.
    let sent = arrivals.len();
    let safe = arrivals
        .iter()
        .filter(|t| **t + Duration::from_secs(1) < killed_at)
        .count();
    let report = gateway.get("/admin/quotas").await.json();
    let used = quota(&report, "*", "rpd")["used"].as_f64().unwrap() as usize;
    eprintln!(
        "kill -9: the upstream got {sent}, {safe} of them a second before the kill; the restarted ledger has {used}"
    );
    assert!(safe > 20, "the load was too light to mean anything: {safe}");
    // One more may be counted: reserved, then killed before it was sent.
    assert!(
        used >= safe && used <= sent + 1,
        "saved {used}; the upstream got {sent}, {safe} of them a second before the kill"
    );
}

#[tokio::test]
async fn admin_quotas_needs_the_master_key() {
    let (_first, _second, setup) = limited_pair("limits: { rpm: 3 }").await;
    let gateway = setup.env("TOLLGATE_MASTER_KEY", "master-123").start();
    assert_eq!(gateway.get("/admin/quotas").await.status, 401);
    let reply = gateway
        .send(
            gateway
                .client
                .get(format!("{}/admin/quotas", gateway.url))
                .bearer_auth("master-123"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["backend"], "embedded");
    assert!(!reply.text.contains("sk-test-first-secret"));
}

/// Runs `tollgate quotas` in the gateway's folder.
fn quotas_cli(gateway: &Gateway, args: &[&str]) -> (bool, String) {
    run(tollgate("quotas", gateway.dir()).args(args).envs([
        ("FIRST", "1"),
        ("FIRST_API_KEY", "sk-test-first-secret"),
        ("SECOND", "1"),
        ("SECOND_API_KEY", "sk-test-second-secret"),
    ]))
}

#[tokio::test]
async fn the_quotas_command_prints_a_table_live_and_offline() {
    let (_first, _second, setup) = limited_pair("limits: { rpm: 3, rpd: 50 }").await;
    let mut gateway = setup.start();
    assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
    let (ok, text) = quotas_cli(&gateway, &["--url", &gateway.url.clone()]);
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("rpd"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with("first")
            && line.contains(" 1 ")
            && line.contains(" 50 ")
            && line.contains(" 49 "),
        "{line}"
    );
    assert!(!text.contains("sk-test"), "{text}");

    // With the gateway stopped, the command reads the store itself.
    gateway.stop();
    let url = gateway.url.clone();
    let (ok, text) = quotas_cli(&gateway, &["--url", &url]);
    assert!(ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("rpd") && l.contains(" 49 ")),
        "{text}"
    );
}

/// A `redis-server` on a free port, stopped on drop.
pub(crate) struct Redis {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Redis {
    /// `None` (with a note) when redis-server is not installed; CI installs
    /// it, and there a missing server fails the test.
    pub(crate) fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: redis-server is not installed ({e}); CI installs it");
                return None;
            }
            Err(e) => panic!("redis-server is needed for this test: {e}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        })
    }
}

impl Redis {
    /// Stops the server (its data goes with it: it saves nothing).
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty server on the same port.
    pub(crate) fn start_again(&mut self) {
        let port = self
            .url
            .trim_end_matches("/0")
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        self.child = std::process::Command::new("redis-server")
            .args(["--port", &port, "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start again"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A provider with a per-model limit on `first-chat` and none on `first-cool`.
fn shared_setup(first: &Mock, second: &Mock, redis: &Redis) -> Setup {
    let text = format!(
        "{}  - {{ alias: first-cool, model: f2, mode: chat }}\n",
        fragment("first", &first.base_url(), &[], "")
    )
    .replace(
        "models:\n",
        "models:\n  - { alias: first-chat, model: f1, mode: chat, limits: { rpm: 5, rpd: 1000 } }\n",
    );
    Setup::new()
        .file("first.yaml", &text)
        .enable("first")
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n")
        .env("TOLLGATE_LEDGER", &redis.url)
}

#[tokio::test]
async fn two_gateways_sharing_redis_respect_one_limit() {
    let Some(redis) = Redis::start() else { return };
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    first.set(Behavior::Limited { per_minute: 5 });
    let a = shared_setup(&first, &second, &redis).start();
    let b = shared_setup(&first, &second, &redis).start();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = format!(
            "{}/v1/chat/completions",
            if i % 2 == 0 { &a.url } else { &b.url }
        );
        let client = a.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(&url)
                .json(&hello("first-chat"))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(first.received().len(), 5, "one limit across both gateways");
    assert_eq!(first.rejected(), 0);
    assert_eq!(second.received().len(), 7);
    for gateway in [&a, &b] {
        let report = gateway.get("/admin/quotas").await.json();
        assert_eq!(report["backend"], "redis");
        assert_eq!(quota(&report, "f1", "rpm")["used"].as_f64(), Some(5.0));
        let rpd = quota(&report, "f1", "rpd");
        assert_eq!(rpd["used"].as_f64(), Some(5.0));
        let resets = rpd["resets_at"].as_str().unwrap();
        assert!(resets.ends_with("T00:00:00Z"), "{resets}");
    }

    // A cooldown learned by one gateway holds for the other.
    first.set(Behavior::Status {
        status: 429,
        headers: vec![("retry-after".into(), "30".into())],
        body: r#"{"error":{"message":"slow down"}}"#.into(),
    });
    assert_eq!(a.chat(hello("first-cool")).await.status, 429);
    let reply = b.chat(hello("first-cool")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("x-tollgate-attempts"), Some("0"));
    assert!(reply.error_message().contains("cooling down after a 429"));
    assert_eq!(first.received().len(), 6);
}

#[tokio::test]
async fn a_stream_settles_with_its_final_usage_chunk() {
    let (_first, _second, setup) = limited_pair("limits: { tpm: 5000 }").await;
    let gateway = setup.start();
    let mut request = hello("first-chat");
    request["stream"] = true.into();
    let reply = gateway.chat(request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    // The estimate (prompt plus 512) gave way to the 15 tokens the stream reported.
    let report = gateway.get("/admin/quotas").await.json();
    assert_eq!(quota(&report, "*", "tpm")["used"].as_f64(), Some(15.0));
}

#[tokio::test]
async fn a_402_cools_the_whole_provider_until_its_credit_renews() {
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    first.set(Behavior::status(
        402,
        r#"{"error":{"message":"You have exceeded your monthly included credits"}}"#,
    ));
    let text = format!(
        "{}  - {{ alias: first-other, model: f2, mode: chat, price: {{ input_per_mtok: 1 }} }}\n",
        fragment(
            "first",
            &first.base_url(),
            &[],
            "limits: { credit_usd: 0.10 }\nprice: { input_per_mtok: 1, output_per_mtok: 1 }",
        )
    )
    .replace(
        "models:\n",
        "models:\n  - { alias: first-chat, model: f1, mode: chat }\n",
    );
    let gateway = Setup::new()
        .file("first.yaml", &text)
        .enable("first")
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\nfirst-other: [second-chat]\n")
        .start();
    assert_eq!(
        gateway
            .chat(hello("first-chat"))
            .await
            .header("x-tollgate-provider"),
        Some("second-chat")
    );
    // Another model of the same provider is skipped too: the credit is shared.
    let reply = gateway.chat(hello("first-other")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert_eq!(
        reply.header("x-tollgate-skipped"),
        Some("first-other:cooldown")
    );
    assert_eq!(first.received().len(), 1);
    let report = gateway.get("/admin/quotas").await.json();
    let credit = quota(&report, "*", "credit_usd");
    let until = credit["cooldown_until"].as_str().unwrap();
    assert!(
        until.ends_with("-01T00:00:00Z"),
        "cools down to the 1st of next month: {until}"
    );
}

#[tokio::test]
async fn a_redis_outage_counts_locally_and_merges_back() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let gateway = shared_setup(&first, &second, &redis).capture_logs().start();
    assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
    redis.stop();
    // Redis gone: this gateway holds first-chat's rpm of 5 on its own, so
    // the sixth request moves on to second-chat, and no request waits long.
    let started = Instant::now();
    for _ in 0..6 {
        assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "an outage cost six requests {took:?}"
    );
    assert_eq!(first.received().len(), 6);
    assert_eq!(second.received().len(), 1);
    let report = gateway.get("/admin/quotas").await.json();
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("Redis")),
        "{report}"
    );
    assert!(gateway.logs().contains("counting on this gateway alone"));

    // Redis back (empty: it kept nothing): the next request merges what was
    // counted alone, and the shared day's count has all of it.
    redis.start_again();
    eventually("the gateway to reach Redis again", async || {
        gateway.chat(hello("second-chat")).await.status == 200
            && gateway.get("/admin/quotas").await.json()["error"].is_null()
    })
    .await;
    eventually("the local counts to be merged", async || {
        let report = gateway.get("/admin/quotas").await.json();
        quota(&report, "f1", "rpd")["used"].as_f64() == Some(5.0)
    })
    .await;
    assert!(
        gateway
            .logs()
            .contains("merged what this gateway counted alone")
    );
    // A second gateway on the same Redis sees the merged counts.
    let other = shared_setup(&first, &second, &redis).start();
    let report = other.get("/admin/quotas").await.json();
    assert_eq!(
        quota(&report, "f1", "rpd")["used"].as_f64(),
        Some(5.0),
        "{report}"
    );
}
