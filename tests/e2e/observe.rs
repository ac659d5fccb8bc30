//! Seeing the gateway: `/metrics` read by Prometheus's own parser after
//! real requests, the request log line, and the dashboard in a real
//! headless browser.

use crate::support::gateway::{Gateway, Setup, hello};
use crate::support::mock::{Behavior, Mock};
use crate::support::python::{missing, run_script};
use serde_json::{Value, json};

const KEY: &str = "tg-observe-master-key";

/// `first-chat` (a free tier with an rpm window) falling back to
/// `second-chat`, behind a master key.
async fn observed(setup: Setup) -> (Mock, Mock, Gateway) {
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let gateway = setup
        .provider_with(
            "first",
            &first.base_url(),
            &[("first-chat", "f1")],
            "limits: { rpm: 100, rpd: 5000 }",
        )
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n")
        .env("TOLLGATE_MASTER_KEY", KEY)
        .start();
    (first, second, gateway)
}

async fn keyed(gateway: &Gateway, body: Value) -> crate::support::gateway::Reply {
    gateway
        .send(
            gateway
                .post("/v1/chat/completions")
                .bearer_auth(KEY)
                .json(&body),
        )
        .await
}

/// Two answers from `first-chat` (one streamed), one fallback after a
/// 429, and one request for a model nobody serves.
async fn traffic(first: &Mock, gateway: &Gateway) -> Vec<crate::support::gateway::Reply> {
    let mut replies = vec![keyed(gateway, hello("first-chat")).await];
    let mut stream = hello("first-chat");
    stream["stream"] = json!(true);
    stream["stream_options"] = json!({"include_usage": true});
    replies.push(keyed(gateway, stream).await);
    first.set(Behavior::rate_limited());
    replies.push(keyed(gateway, hello("first-chat")).await);
    replies.push(keyed(gateway, hello("no-such-model")).await);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 404]);
    replies
}

/// The value of the one sample named `name` whose labels include `labels`.
fn sample(metrics: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = metrics["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} samples",
        matching.len()
    );
    matching.first().copied()
}

fn count(metrics: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(metrics, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

#[tokio::test]
async fn metrics_count_what_happened_as_prometheus_parses_them() {
    if missing(&["prometheus_client"]) {
        return;
    }
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap().to_string();
    drop(free);
    let (first, _second, gateway) =
        observed(Setup::new().arg("--metrics-listen").arg(&metrics_addr)).await;
    traffic(&first, &gateway).await;

    // Behind the master key on the main address.
    let refused = gateway.get("/metrics").await;
    assert_eq!(refused.status, 401);
    let url = format!("{}/metrics", gateway.url);
    let metrics = run_script("metrics_parse.py", &[&url, KEY]).await;
    assert!(
        metrics["content_type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        metrics["content_type"]
    );
    let ok = [("model", "first-chat"), ("outcome", "ok")];
    let by = |served: &'static str| [ok[0], ok[1], ("served_by", served)];
    assert_eq!(
        count(&metrics, "tollgate_requests_total", &by("first-chat")),
        2.0
    );
    assert_eq!(
        count(&metrics, "tollgate_requests_total", &by("second-chat")),
        1.0
    );
    let unknown = [
        ("model", ""),
        ("served_by", ""),
        ("outcome", "client_error"),
    ];
    assert_eq!(count(&metrics, "tollgate_requests_total", &unknown), 1.0);
    let fallback = [
        ("from", "first-chat"),
        ("to", "second-chat"),
        ("reason", "rate_limited"),
    ];
    assert_eq!(count(&metrics, "tollgate_fallbacks_total", &fallback), 1.0);
    // The mock reports 11 prompt and 4 completion tokens an answer.
    let tokens = |served, direction| {
        count(
            &metrics,
            "tollgate_tokens_total",
            &[("served_by", served), ("direction", direction)],
        )
    };
    assert_eq!(tokens("first-chat", "prompt"), 22.0);
    assert_eq!(tokens("first-chat", "completion"), 8.0);
    assert_eq!(tokens("second-chat", "prompt"), 11.0);
    let durations = [("model", "first-chat")];
    assert_eq!(
        count(
            &metrics,
            "tollgate_request_duration_seconds_count",
            &durations
        ),
        3.0
    );
    let first_token = [("served_by", "first-chat")];
    assert_eq!(
        count(&metrics, "tollgate_first_token_seconds_count", &first_token),
        1.0,
        "one stream"
    );
    assert_eq!(
        metrics["families"]["tollgate_request_duration_seconds"]["type"],
        "histogram"
    );
    // Headroom, read from the ledger at scrape time: three requests reached
    // the first provider (the 429 counts too).
    let rpm = [("provider", "first"), ("model", "*"), ("window", "rpm")];
    assert_eq!(count(&metrics, "tollgate_quota_limit", &rpm), 100.0);
    assert_eq!(count(&metrics, "tollgate_quota_remaining", &rpm), 97.0);
    let cooling = count(
        &metrics,
        "tollgate_cooldown_seconds",
        &[("provider", "first")],
    );
    // The mock's 429 says its requests window resets in 2m59.56s.
    assert!(cooling > 170.0 && cooling <= 180.0, "{cooling}");
    let openai_calls = [("plugin", "openai"), ("outcome", "ok")];
    assert!(count(&metrics, "tollgate_plugin_calls_total", &openai_calls) >= 4.0);
    let waiting = [("state", "waiting")];
    assert_eq!(count(&metrics, "tollgate_gpu_leases", &waiting), 0.0);
    assert!(metrics["families"]["tollgate_gpu_vram_bytes"].is_object());
    assert_eq!(
        count(
            &metrics,
            "tollgate_reloads_total",
            &[("outcome", "rejected")]
        ),
        0.0
    );
    // No label value was taken from the client: the unknown model's name
    // appears nowhere.
    let text = metrics.to_string();
    assert!(
        !text.contains("no-such-model"),
        "a client's name became a label"
    );
    assert!(!text.contains("sk-test"), "a key leaked into the metrics");

    // The same counters on --metrics-listen, without the key.
    let open = run_script(
        "metrics_parse.py",
        &[&format!("http://{metrics_addr}/metrics")],
    )
    .await;
    assert_eq!(
        count(&open, "tollgate_requests_total", &by("first-chat")),
        2.0
    );
}

/// The parsed `tollgate::request` lines of a JSON log.
fn request_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "tollgate::request")
        .collect()
}

#[tokio::test]
async fn each_request_writes_one_json_line_without_keys_or_content() {
    let (first, _second, gateway) = observed(Setup::new().arg("--log-json").capture_logs()).await;
    let replies = traffic(&first, &gateway).await;
    // A stream's line is written when its body ends: give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = gateway.logs();
    let lines = request_lines(&logs);
    assert_eq!(lines.len(), 4, "one line a request:\n{logs}");
    // A stream's line may come after the next request's.
    let line_of = |reply: &crate::support::gateway::Reply| {
        let id = reply.header("x-request-id").expect("an x-request-id");
        let line = lines.iter().find(|l| l["id"] == id).expect("its line");
        assert_eq!(line["status"], reply.status);
        assert!(line["duration_ms"].as_f64().unwrap() > 0.0);
        line
    };
    let (whole, stream, fallback, unknown) = (
        line_of(&replies[0]),
        line_of(&replies[1]),
        line_of(&replies[2]),
        line_of(&replies[3]),
    );
    assert_eq!(whole["model"], "first-chat");
    assert_eq!(whole["served_by"], "first-chat");
    assert_eq!(whole["outcome"], "ok");
    assert_eq!(whole["prompt_tokens"], 11);
    assert_eq!(whole["completion_tokens"], 4);
    assert!(whole.get("first_token_ms").is_none(), "{whole}");
    assert!(stream["first_token_ms"].as_f64().unwrap() > 0.0, "{stream}");
    assert_eq!(stream["completion_tokens"], 4);
    assert_eq!(
        fallback["attempts"],
        "first-chat:failed(rate_limited), second-chat:served"
    );
    assert_eq!(fallback["served_by"], "second-chat");
    assert_eq!(unknown["outcome"], "client_error");
    assert_eq!(
        unknown["model"], "",
        "the client's name is not logged as a model"
    );
    for secret in [KEY, "sk-test-first-secret", "sk-test-second-secret"] {
        assert!(!logs.contains(secret), "a key leaked into the log");
    }
    assert!(
        !logs.contains("\"hi\"") && !logs.contains("hello from"),
        "message content leaked into the log:\n{logs}"
    );
}

#[tokio::test]
async fn the_dashboard_shows_providers_and_updates_in_a_real_browser() {
    if missing(&["playwright"]) {
        return;
    }
    let chromium = ["chromium", "chromium-browser"].iter().any(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok()
    });
    if !chromium {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium");
        eprintln!("SKIPPED: apt-get install chromium");
        return;
    }
    let (_first, _second, gateway) = observed(Setup::new()).await;
    let page = gateway.get("/").await;
    assert_eq!(page.status, 200, "the page itself needs no key");
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "no CDN"
    );
    let screenshot = std::env::var("TOLLGATE_DASHBOARD_SCREENSHOT").unwrap_or_default();
    let mut args = vec![gateway.url.as_str(), KEY, "first-chat"];
    if !screenshot.is_empty() {
        args.push(&screenshot);
    }
    let seen = run_script("dashboard_browser.py", &args).await;
    assert_eq!(seen["asked_for_key"], true);
    assert_eq!(seen["key_stored"], true);
    assert_eq!(seen["providers"], json!(["first", "second"]), "{seen}");
    assert_eq!(seen["windows"], json!(["rpm", "rpd"]), "{seen}");
    assert!(
        seen["plugins"].as_str().unwrap().contains("openai"),
        "{seen}"
    );
    assert!(
        seen["reload"].as_str().unwrap().contains("no error"),
        "{seen}"
    );
    let (before, after) = (
        seen["requests_before"].as_i64().unwrap(),
        seen["requests_after"].as_i64().unwrap(),
    );
    assert!(before >= 0, "{seen}");
    assert_eq!(
        after,
        before + 1,
        "the chart counted the new request: {seen}"
    );
    assert!(seen["updated_within_s"].as_f64().unwrap() <= 4.0, "{seen}");
}
