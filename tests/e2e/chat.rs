//! Catalogue visibility and plain chat.

use crate::support::gateway::{Setup, content, hello};
use crate::support::mock::Mock;
use serde_json::json;

#[tokio::test]
async fn models_lists_only_enabled_providers() {
    let mock = Mock::start("m").await;
    let gateway = Setup::new()
        .provider(
            "alpha",
            &mock.base_url(),
            &[("alpha-chat", "a1"), ("alpha-big", "a2")],
        )
        .disabled_provider("beta", &mock.base_url(), &[("beta-chat", "b1")])
        .disabled_provider("gamma", &mock.base_url(), &[("gamma-chat", "g1")])
        .env("GAMMA", "1") // flag without a key: still disabled
        .disabled_provider("delta", &mock.base_url(), &[("delta-chat", "d1")])
        .env("DELTA", "yes")
        .env("DELTA_API_KEY", "sk-delta") // a key without flag `1`: still disabled
        .start();
    let reply = gateway.get("/v1/models").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["alpha-chat", "alpha-big"]);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "alpha");

    // Disabled aliases are invisible to chat too.
    let reply = gateway.chat(hello("gamma-chat")).await;
    assert_eq!(reply.status, 404);
    assert!(mock.received().is_empty());
}

#[tokio::test]
async fn chat_reaches_the_upstream_intact_and_answers() {
    let mock = Mock::start("alpha").await;
    let gateway = Setup::new()
        .provider(
            "alpha",
            &mock.base_url(),
            &[("alpha-chat", "upstream-model-1")],
        )
        .start();
    let request = json!({
        "model": "alpha-chat",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_object"},
        "temperature": 0.25,
        "seed": 7
    });
    let reply = gateway.chat(request.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from alpha");
    assert_eq!(reply.json()["usage"]["total_tokens"], 15);
    assert_eq!(reply.header("x-tollgate-provider"), Some("alpha-chat"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("1"));

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-test-alpha-secret")
    );
    assert_eq!(sent.body["model"], "upstream-model-1");
    for field in [
        "messages",
        "tools",
        "tool_choice",
        "response_format",
        "temperature",
        "seed",
    ] {
        assert_eq!(
            sent.body[field], request[field],
            "{field} changed on the way"
        );
    }
}
