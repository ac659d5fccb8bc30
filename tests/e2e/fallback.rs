//! Every failure that moves on to the next candidate, and the ones that don't.

use crate::support::gateway::{Setup, content, hello, pair};
use crate::support::mock::{Behavior, Mock};

async fn assert_falls_back(behavior: Behavior, reason: &str) {
    let (first, second, gateway) = pair().await;
    first.set(behavior.clone());
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 200, "{behavior:?}: {}", reply.text);
    assert_eq!(content(&reply.json()), "hello from second", "{behavior:?}");
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
    assert_eq!(first.received().len(), 1, "{behavior:?}: tried once");
    assert_eq!(second.received().len(), 1);

    // With the fallback failing the same way, the reason reaches the client.
    second.set(behavior.clone());
    let reply = gateway.chat(hello("first-chat")).await;
    let message = reply.error_message();
    assert!(message.contains(reason), "{behavior:?}: {message}");
    assert!(
        message.contains("first-chat (first)") && message.contains("second-chat (second)"),
        "{message}"
    );
    assert!(!message.contains("sk-test"), "a key leaked: {message}");
}

#[tokio::test]
async fn rate_limited_upstream_is_skipped() {
    assert_falls_back(
        Behavior::rate_limited(),
        "rate limited (HTTP 429, retry after 7.0s)",
    )
    .await;
}

#[tokio::test]
async fn server_errors_are_skipped() {
    assert_falls_back(
        Behavior::status(500, r#"{"error":{"message":"boom"}}"#),
        "server error (HTTP 500)",
    )
    .await;
    assert_falls_back(
        Behavior::status(503, "overloaded"),
        "unavailable (HTTP 503)",
    )
    .await;
}

#[tokio::test]
async fn auth_failures_are_skipped() {
    assert_falls_back(
        Behavior::status(401, r#"{"error":{"message":"Invalid API Key"}}"#),
        "authentication failed (HTTP 401)",
    )
    .await;
    assert_falls_back(
        Behavior::status(403, "{}"),
        "authentication failed (HTTP 403)",
    )
    .await;
}

#[tokio::test]
async fn reset_connections_are_skipped() {
    assert_falls_back(Behavior::Reset, "connection").await;
}

#[tokio::test]
async fn stalled_upstreams_time_out_and_are_skipped() {
    assert_falls_back(Behavior::Stall, "no response within 2s").await;
}

#[tokio::test]
async fn unreachable_upstreams_are_skipped() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let second = Mock::start("second").await;
    let gateway = Setup::new()
        .provider("first", &dead, &[("first-chat", "f1")])
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n")
        .start();
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
}

#[tokio::test]
async fn client_errors_are_returned_as_they_are() {
    for status in [400u16, 413, 422] {
        let (first, second, gateway) = pair().await;
        first.set(Behavior::status(status, r#"{"error":{"message":"messages[0].content is too long","type":"invalid_request_error"}}"#));
        let reply = gateway.chat(hello("first-chat")).await;
        assert_eq!(reply.status, status);
        assert_eq!(reply.error_message(), "messages[0].content is too long");
        assert_eq!(reply.header("x-tollgate-provider"), Some("first-chat"));
        assert!(
            second.received().is_empty(),
            "HTTP {status} must not fall back"
        );
    }
}

#[tokio::test]
async fn exhaustion_is_429_when_every_candidate_is_rate_limited_else_502() {
    let (first, second, gateway) = pair().await;
    first.set(Behavior::rate_limited());
    second.set(Behavior::rate_limited());
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));

    let (first, second, gateway) = pair().await;
    first.set(Behavior::rate_limited());
    second.set(Behavior::status(500, "{}"));
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], "all_candidates_failed");
}

#[tokio::test]
async fn keys_echoed_by_an_upstream_are_scrubbed() {
    let (first, second, gateway) = pair().await;
    first.set(Behavior::status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-test-first-secret"}}"#,
    ));
    second.set(Behavior::status(
        400,
        r#"{"error":{"message":"bad input near sk-test-second-secret"}}"#,
    ));
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.text.contains("sk-test"), "{}", reply.text);
    assert!(reply.text.contains("***"), "{}", reply.text);
}

#[tokio::test]
async fn disabled_fallbacks_are_skipped_silently() {
    let first = Mock::start("first").await;
    let third = Mock::start("third").await;
    let gateway = Setup::new()
        .provider("first", &first.base_url(), &[("first-chat", "f1")])
        .disabled_provider("second", &third.base_url(), &[("second-chat", "s1")])
        .provider("third", &third.base_url(), &[("third-chat", "t1")])
        .fallbacks("first-chat: [second-chat, third-chat]\n")
        .start();
    first.set(Behavior::rate_limited());
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-tollgate-provider"), Some("third-chat"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
    assert_eq!(third.received().len(), 1);
}

#[tokio::test]
async fn a_request_with_tools_skips_the_boxes_that_refuse_them() {
    let boxed = Mock::start("box").await;
    let spare = Mock::start("spare").await;
    let gateway = Setup::new()
        .provider_with(
            "agentbox",
            &boxed.base_url(),
            &[("box-chat", "sonnet"), ("box-only", "opus")],
            "unsupported: [tools, response_format]",
        )
        .provider("spare", &spare.base_url(), &[("spare-chat", "s")])
        .fallbacks("box-chat: [spare-chat]\n")
        .start();
    let mut with_tools = hello("box-chat");
    with_tools["tools"] = serde_json::json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let reply = gateway.chat(with_tools.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from spare");
    assert_eq!(reply.header("x-tollgate-skipped"), Some("box-chat:tools"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("1"));

    let plain = gateway.chat(hello("box-chat")).await;
    assert_eq!(content(&plain.json()), "hello from box");
    assert_eq!(
        boxed.received().len(),
        1,
        "only the plain request reached the box"
    );

    with_tools["model"] = "box-only".into();
    with_tools["response_format"] = serde_json::json!({"type": "json_object"});
    let refused = gateway.chat(with_tools).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(
        refused.json()["error"]["code"],
        "unsupported_by_every_candidate"
    );
    assert!(refused.error_message().contains("does not accept `tools`"));
    assert_eq!(boxed.received().len(), 1);
}
