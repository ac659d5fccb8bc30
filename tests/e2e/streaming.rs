//! Streaming: pass-through as it arrives, usage on request, and failures
//! before and after the first byte.

use crate::support::gateway::{Setup, hello, pair, streamed_text};
use crate::support::mock::{Behavior, Mock};
use crate::support::scripted::{Answer, Recorded, Scripted};
use serde_json::{Value, json};
use std::time::Duration;

fn stream_request(model: &str, include_usage: bool) -> Value {
    let mut body = hello(model);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn stream_ends_with_done_and_hides_usage_unless_asked() {
    let mock = Mock::start("alpha").await;
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .start();

    let reply = gateway.chat(stream_request("alpha-chat", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("x-tollgate-provider"), Some("alpha-chat"));
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "hello from alpha");
    assert!(
        !reply.text.contains("\"usage\""),
        "usage was not asked for: {}",
        reply.text
    );
    // The gateway still asks the upstream for usage, to count tokens.
    assert_eq!(
        mock.received()[0].body["stream_options"]["include_usage"],
        true
    );

    let reply = gateway.chat(stream_request("alpha-chat", true)).await;
    let events = reply.events();
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|c| c["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1, "{}", reply.text);
    assert_eq!(usage[0]["usage"]["total_tokens"], 15);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn first_token_arrives_before_the_upstream_finishes() {
    let mock = Mock::start("alpha").await;
    mock.set(Behavior::Gated);
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .start();
    let mut response = gateway
        .post("/v1/chat/completions")
        .json(&stream_request("alpha-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first chunk must arrive while the upstream is still held")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("hello"));
    mock.release();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn with_every_plugin_slot_held_a_request_gets_503_after_the_queue_deadline() {
    let mock = Mock::start("alpha").await;
    mock.set(Behavior::Gated);
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .env("TOLLGATE_MAX_INSTANCES", "1")
        .env("TOLLGATE_PLUGIN_QUEUE_MS", "300")
        .start();
    // A stream holds the one instance slot until it ends.
    let mut held = gateway
        .post("/v1/chat/completions")
        .json(&stream_request("alpha-chat", false))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    held.chunk().await.unwrap().expect("the first chunk");

    let asked = std::time::Instant::now();
    let reply = gateway.chat(hello("alpha-chat")).await;
    let waited = asked.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"]["code"], "overloaded");
    assert!(
        reply.error_message().contains("TOLLGATE_MAX_INSTANCES"),
        "{}",
        reply.text
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    assert_eq!(
        mock.received().len(),
        1,
        "the refused request reached no provider"
    );

    // Once the stream ends, its slot serves the next request.
    mock.release();
    while held.chunk().await.unwrap().is_some() {}
    mock.set(Behavior::Ok);
    let reply = gateway.chat(hello("alpha-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn stream_that_fails_before_its_first_byte_falls_back() {
    let (first, _second, gateway) = pair().await;
    for behavior in [
        Behavior::rate_limited(),
        Behavior::Reset,
        Behavior::Stall,
        Behavior::BreakMidStream,
    ] {
        first.set(behavior.clone());
        // BreakMidStream sends chunks first, so it commits; the others must fall back.
        let reply = gateway.chat(stream_request("first-chat", false)).await;
        assert_eq!(reply.status, 200, "{behavior:?}");
        if matches!(behavior, Behavior::BreakMidStream) {
            continue;
        }
        assert_eq!(
            reply.header("x-tollgate-provider"),
            Some("second-chat"),
            "{behavior:?}"
        );
        assert_eq!(streamed_text(&reply.events()), "hello from second");
    }
}

#[tokio::test]
async fn stream_that_fails_after_its_first_byte_ends_with_an_error_event() {
    let mock = Mock::start("alpha").await;
    let other = Mock::start("other").await;
    mock.set(Behavior::BreakMidStream);
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .provider("other", &other.base_url(), &[("other-chat", "o1")])
        .fallbacks("alpha-chat: [other-chat]\n")
        .start();
    let reply = gateway.chat(stream_request("alpha-chat", false)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-tollgate-provider"), Some("alpha-chat"));
    let events = reply.events();
    assert_eq!(streamed_text(&events), "hello from");
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["code"], "stream_interrupted",
        "{}",
        reply.text
    );
    assert!(!reply.text.contains("[DONE]"));
    assert!(
        other.received().is_empty(),
        "a committed stream does not fall back"
    );
}

/// An OpenAI stream, `[DONE]` included, whose body ends a moment after its
/// last event (the empty frame), as a provider's may.
fn openai_events() -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                           "model": "a1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    vec![
        chunk(
            json!({"role": "assistant", "content": "hello"}),
            Value::Null,
        ),
        chunk(json!({}), json!("stop")),
        "data: [DONE]\n\n".to_owned(),
        String::new(),
    ]
}

#[tokio::test]
async fn a_finished_stream_gives_its_upstream_connection_back_to_the_pool() {
    let mock = Scripted::start(|_: &Recorded| Answer::Events {
        frames: openai_events(),
        gap: Duration::from_millis(20),
    })
    .await;
    let gateway = Setup::new()
        .fragment(
            "alpha",
            "openai",
            &mock.url("/v1"),
            &[("alpha-chat", "a1", "chat")],
            "",
        )
        .start();
    for _ in 0..3 {
        // One client connection, so one serving lane and one upstream pool.
        let reply = gateway.chat(stream_request("alpha-chat", false)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let events = reply.events();
        assert_eq!(streamed_text(&events), "hello");
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        // The rest of the upstream body is read after the client's stream ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dropped unread after its `[DONE]`, each response took its connection
    // with it, and each request paid for a new one (a TLS handshake, with a
    // real provider).
    assert_eq!(mock.connections(), 1, "three streams, one connection");
}
