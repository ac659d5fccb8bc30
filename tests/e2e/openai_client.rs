//! The official OpenAI Python client against the real gateway: what users
//! actually point at Tollgate. Runs when `python3 -c "import openai"` works
//! (CI installs it); otherwise it says so and passes, except under CI, where
//! a missing client fails the test.

use crate::support::gateway::Setup;
use crate::support::mock::{Behavior, Mock};
use crate::support::python::{missing, run_script};

#[tokio::test]
async fn the_official_openai_client_works_against_tollgate() {
    if missing(&["openai"]) {
        return;
    }
    let mock = Mock::start("alpha").await;
    let limited = Mock::start("limited").await;
    limited.set(Behavior::rate_limited());
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .provider("limited", &limited.base_url(), &[("limited-chat", "l1")])
        .fallbacks("limited-chat: [alpha-chat]\n")
        .env("TOLLGATE_MASTER_KEY", "tg-python-client-key")
        .start();
    let url = format!("{}/v1", gateway.url);
    let args = [
        &url[..],
        "tg-python-client-key",
        "alpha-chat",
        "limited-chat",
    ];
    let seen = run_script("openai_client.py", &args).await;
    assert_eq!(
        seen["models"],
        serde_json::json!(["alpha-chat", "limited-chat"])
    );
    assert_eq!(seen["text"], "hello from alpha");
    assert_eq!(seen["usage"], 15);
    assert_eq!(seen["provider"], "alpha-chat");
    assert_eq!(seen["streamed"], "hello from alpha");
    assert_eq!(seen["stream_usage"], 15);
    assert_eq!(seen["fallback_text"], "hello from alpha");
    assert_eq!(seen["fallback_attempts"], "2");
    assert_eq!(seen["not_found"], "model_not_found");
    assert_eq!(seen["auth"], "rejected");
}

#[tokio::test]
async fn the_official_client_uses_every_mode_and_the_anthropic_adapter() {
    if missing(&["openai"]) {
        return;
    }
    let local = crate::modes::openai_like("local").await;
    let anthropic = crate::anthropic::anthropic_mock().await;
    let cohere = crate::cohere::cohere_mock().await;
    let gateway = crate::modes::local(&local)
        .fragment(
            "anthropic",
            "anthropic",
            &anthropic.url("/v1"),
            &[("claude", "claude-sonnet-4-6", "chat")],
            "",
        )
        .fragment(
            "cohere",
            "cohere",
            &cohere.url("/v2"),
            &[("cohere-embed", "embed-v4.0", "embedding")],
            "",
        )
        .env("TOLLGATE_MASTER_KEY", "tg-python-modes-key")
        .start();
    let url = format!("{}/v1", gateway.url);
    let seen = run_script("openai_modes.py", &[&url, "tg-python-modes-key"]).await;
    assert_eq!(seen["embedding"], serde_json::json!([0.5, -0.25]));
    assert_eq!(seen["embedding_tokens"], 7);
    // [0.0, 0.5] as little-endian f32s, base64.
    assert_eq!(seen["b64_embedding"], "AAAAAAAAAD8=");
    assert_eq!(seen["speech_type"], "audio/mpeg");
    assert_eq!(seen["speech_bytes"], 300_000);
    assert_eq!(seen["transcript"], "hello from local");
    assert!(seen["srt"].as_str().unwrap().starts_with("1\n00:00:00,000"));
    assert_eq!(seen["image"], "89504e47");
    assert_eq!(
        seen["tool_call"],
        serde_json::json!(["weather", {"city": "Paris"}])
    );
    assert_eq!(seen["finish_reason"], "tool_calls");
    assert!(
        seen["wrong_mode"].as_str().unwrap().contains("serves chat"),
        "{seen}"
    );
}
