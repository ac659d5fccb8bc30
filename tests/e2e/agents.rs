//! Coding agents' protocols through the real gateway: Anthropic Messages
//! (`/v1/messages`) and OpenAI Responses (`/v1/responses`), driven by the
//! official `anthropic` and `openai` Python SDKs against an OpenAI-shaped
//! provider, so every answer is translated both ways.

use crate::support::gateway::Setup;
use crate::support::mock::{Behavior, Mock};
use crate::support::python::{missing, run_script};
use crate::support::scripted::{Answer, Recorded, Scripted};
use serde_json::{Value, json};

/// An OpenAI-compatible provider that calls `weather` when offered tools
/// and says what the tool answered once it has a result.
pub(crate) async fn tool_provider() -> Scripted {
    Scripted::start(|request: &Recorded| {
        let body = request.json();
        let last = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
        let message = if last["role"] == "tool" {
            json!({"role": "assistant", "content": format!("It is {} in Paris.", last["content"].as_str().unwrap_or(""))})
        } else if body.get("tools").is_some() {
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_paris", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]})
        } else {
            json!({"role": "assistant", "content": "hello from tools"})
        };
        let finish = if message.get("tool_calls").is_some() { "tool_calls" } else { "stop" };
        if body["stream"] == true {
            Answer::events(stream_of(&message, finish, &body))
        } else {
            Answer::json(200, json!({"id": "chatcmpl-tools", "object": "chat.completion", "created": 1,
                "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}))
        }
    })
    .await
}

/// The chunks OpenAI would stream for `message`: text word by word, a tool
/// call's arguments in two pieces, then the usage when asked for.
fn stream_of(message: &Value, finish: &str, body: &Value) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1,
            "model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut frames = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    if let Some(text) = message["content"].as_str() {
        for word in text.split_inclusive(' ') {
            frames.push(chunk(json!({"content": word}), Value::Null));
        }
    }
    if let Some(call) = message["tool_calls"].get(0) {
        let arguments = call["function"]["arguments"].as_str().unwrap();
        let (head, tail) = arguments.split_at(9);
        frames.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
            "function": {"name": "weather", "arguments": head}}]}),
            Value::Null,
        ));
        frames.push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": tail}}]}),
            Value::Null,
        ));
    }
    frames.push(chunk(json!({}), json!(finish)));
    if body.pointer("/stream_options/include_usage") == Some(&json!(true)) {
        frames.push(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-tools", "object": "chat.completion.chunk",
            "created": 1, "model": body["model"], "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}})
        ));
    }
    frames.push("data: [DONE]\n\n".into());
    frames
}

#[tokio::test]
async fn the_official_anthropic_and_openai_sdks_speak_messages_and_responses() {
    if missing(&["anthropic", "openai"]) {
        return;
    }
    let tools = tool_provider().await;
    let limited = Mock::start("limited").await;
    limited.set(Behavior::rate_limited());
    let gateway = Setup::new()
        .provider("tools", &tools.url("/v1"), &[("agent-chat", "t1")])
        .provider("limited", &limited.base_url(), &[("limited-chat", "l1")])
        .fallbacks("limited-chat: [agent-chat]\n")
        .env("TOLLGATE_MASTER_KEY", "tg-agents-key")
        .start();
    let seen = run_script(
        "agents_client.py",
        &[&gateway.url, "tg-agents-key", "agent-chat", "limited-chat"],
    )
    .await;

    let a = &seen["anthropic"];
    assert_eq!(a["models"], json!(["agent-chat", "limited-chat"]));
    assert_eq!(a["text"], "hello from tools");
    assert_eq!(a["stop_reason"], "end_turn");
    assert_eq!(a["usage"], json!([11, 4]));
    assert_eq!(a["streamed"], "hello from tools");
    assert_eq!(a["stream_usage"], json!([11, 4]));
    assert_eq!(
        a["stream_events"],
        json!([
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ])
    );
    assert_eq!(
        a["tool_use"],
        json!(["weather", {"city": "Paris"}, "tool_use"])
    );
    assert_eq!(
        a["streamed_tool_use"],
        json!(["weather", {"city": "Paris"}])
    );
    assert_eq!(a["after_tool"], "It is 18C in Paris.");
    assert_eq!(a["not_found"], json!([404, "not_found_error"]));
    assert_eq!(a["malformed"], json!([400, "invalid_request_error"]));
    assert_eq!(a["fallback_text"], "hello from tools");
    assert_eq!(a["fallback_attempts"], "2");
    assert_eq!(a["auth"], json!([401, "authentication_error"]));
    assert!(a["count_tokens"].as_u64().unwrap() > 0, "{a}");

    let r = &seen["responses"];
    assert_eq!(r["text"], "hello from tools");
    assert_eq!(r["usage"], json!([11, 4, 15]));
    assert_eq!(r["streamed"], "hello from tools");
    assert_eq!(r["stream_status"], "completed");
    for kind in [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ] {
        assert!(
            r["stream_events"]
                .as_array()
                .unwrap()
                .contains(&json!(kind)),
            "{kind}: {r}"
        );
    }
    assert_eq!(
        r["call"],
        json!(["function_call", "weather", {"city": "Paris"}, "call_paris"])
    );
    assert!(
        r["streamed_call_events"]
            .as_array()
            .unwrap()
            .contains(&json!("response.function_call_arguments.delta")),
        "{r}"
    );
    assert_eq!(
        r["streamed_call"],
        json!(["weather", "{\"city\": \"Paris\"}"])
    );
    assert_eq!(r["after_call"], "It is 18C in Paris.");
    assert_eq!(r["not_found"], json!([404, "model_not_found"]));
    assert_eq!(r["malformed"], json!([400, "input"]));
    assert_eq!(r["stateful"], json!([400, "previous_response_id"]));
    // The 429 the Messages call met cools `limited-chat` down: skipped
    // this time without a request.
    assert_eq!(r["fallback_text"], "hello from tools");
    assert_eq!(r["fallback_provider"], "agent-chat");
    assert_eq!(r["fallback_skipped"], "limited-chat:cooldown");

    // What the provider was sent: OpenAI chat, the tool result as a `tool`
    // message, usage asked for on streams.
    let sent = tools.received();
    let round_trip = sent
        .iter()
        .map(Recorded::json)
        .find(|b| {
            b["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["role"] == "tool")
        })
        .expect("a tool result reached the provider");
    assert!(
        round_trip["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tool_calls"][0]["id"] == "call_paris")
    );
    assert!(
        sent.iter()
            .map(Recorded::json)
            .any(|b| b["stream_options"]["include_usage"] == true)
    );
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_stream_that_breaks_off_ends_with_each_protocols_error_event() {
    let broken = Mock::start("broken").await;
    broken.set(Behavior::BreakMidStream);
    let gateway = Setup::new()
        .provider("broken", &broken.base_url(), &[("broken-chat", "b1")])
        .start();
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .json(&messages_body("broken-chat", true)),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text.starts_with("event: message_start"),
        "{}",
        reply.text
    );
    let last = reply.text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\n"), "{}", reply.text);
    assert!(
        last.contains(r#""type":"error""#) && last.contains("api_error"),
        "{last}"
    );
    assert!(!reply.text.contains("message_stop"));

    let request = json!({"model": "broken-chat", "input": "hi", "stream": true});
    let reply = gateway
        .send(gateway.post("/v1/responses").json(&request))
        .await;
    let last = reply.text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("event: response.failed\n"),
        "{}",
        reply.text
    );
    assert!(last.contains(r#""status":"failed""#), "{last}");
}

#[tokio::test]
async fn the_ledger_counts_a_messages_streams_usage() {
    let mock = Mock::start("counted").await;
    let gateway = Setup::new()
        .provider_with(
            "counted",
            &mock.base_url(),
            &[("counted-chat", "c1")],
            "limits: { tpm: 1000 }",
        )
        .start();
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .json(&messages_body("counted-chat", true)),
        )
        .await;
    assert!(
        reply.text.contains(r#""output_tokens":4"#),
        "{}",
        reply.text
    );
    let report = gateway.get("/admin/quotas").await.json();
    let tpm = report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["window"] == "tpm")
        .unwrap();
    // The provider's reported 11 + 4, not the estimate.
    assert_eq!(tpm["used"].as_f64(), Some(15.0), "{report}");
}

#[tokio::test]
async fn messages_errors_come_in_anthropics_shape_before_any_provider_is_called() {
    let limited = Mock::start("limited").await;
    limited.set(Behavior::rate_limited());
    let gateway = Setup::new()
        .provider("limited", &limited.base_url(), &[("limited-chat", "l1")])
        .env("TOLLGATE_MASTER_KEY", "tg-shape-key")
        .start();
    let post = |key: &str| {
        gateway
            .client
            .post(format!("{}/v1/messages", gateway.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    };
    let kind = |reply: &crate::support::gateway::Reply| {
        let body = reply.json();
        assert_eq!(body["type"], "error", "{body}");
        (
            reply.status,
            body["error"]["type"].as_str().unwrap().to_owned(),
        )
    };

    let wrong = gateway
        .send(post("wrong").json(&messages_body("limited-chat", false)))
        .await;
    assert_eq!(kind(&wrong), (401, "authentication_error".into()));
    let not_json = gateway.send(post("tg-shape-key").body("{not json")).await;
    assert_eq!(kind(&not_json), (400, "invalid_request_error".into()));
    let mut no_cap = messages_body("limited-chat", false);
    no_cap.as_object_mut().unwrap().remove("max_tokens");
    let no_cap = gateway.send(post("tg-shape-key").json(&no_cap)).await;
    assert_eq!(kind(&no_cap), (400, "invalid_request_error".into()));
    assert!(no_cap.text.contains("max_tokens"), "{}", no_cap.text);
    let unknown = gateway
        .send(post("tg-shape-key").json(&messages_body("nope", false)))
        .await;
    assert_eq!(kind(&unknown), (404, "not_found_error".into()));
    assert!(limited.received().is_empty(), "no provider was called");

    // The provider's 429, then its cooldown: Anthropic's rate_limit_error
    // with retry-after, sent as a Bearer token this time.
    for _ in 0..2 {
        let limited = gateway
            .send(
                gateway
                    .post("/v1/messages")
                    .bearer_auth("tg-shape-key")
                    .json(&messages_body("limited-chat", false)),
            )
            .await;
        assert_eq!(kind(&limited), (429, "rate_limit_error".into()));
        assert!(limited.header("retry-after").is_some());
    }
    assert_eq!(
        limited.received().len(),
        1,
        "the cooldown spared the provider"
    );

    let models = gateway
        .send(
            gateway
                .client
                .get(format!("{}/v1/models", gateway.url))
                .header("x-api-key", "tg-shape-key")
                .header("anthropic-version", "2023-06-01"),
        )
        .await
        .json();
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["data"][0]["id"], "limited-chat");
    assert_eq!(models["has_more"], false);
}

/// A provider that speaks Messages: a thinking block (with its signature)
/// and text, whole or streamed, and usage with cache reads.
async fn messages_provider() -> Scripted {
    Scripted::start(|request: &Recorded| {
        let body = request.json();
        let thinking = json!({"type": "thinking", "thinking": "Paris is in France.", "signature": "sig-abc"});
        if body["stream"] != true {
            return Answer::json(200, json!({
                "id": "msg_native", "type": "message", "role": "assistant", "model": body["model"],
                "content": [thinking, {"type": "text", "text": "Bonjour."}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 7}
            }));
        }
        let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
        Answer::events(vec![
            event("message_start", json!({"type": "message_start", "message": {"id": "msg_native", "type": "message",
                "role": "assistant", "model": body["model"], "content": [], "stop_reason": null,
                "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 1}}})),
            event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": ""}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Paris is in France."}})),
            event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": "sig-abc"}})),
            event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 7}})),
            event("message_stop", json!({"type": "message_stop"})),
        ])
    })
    .await
}

#[tokio::test]
async fn an_anthropic_provider_gets_the_clients_own_request_and_its_answer_comes_back_untouched() {
    let native = messages_provider().await;
    let gateway = Setup::new()
        .fragment(
            "anthropic",
            "anthropic",
            &native.url("/v1"),
            &[("claude", "claude-sonnet-4-6", "chat")],
            "limits: { tpm: 10000 }\n",
        )
        .start();
    let request = json!({"model": "claude", "max_tokens": 2048, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello?", "cache_control": {"type": "ephemeral"}}]}]});
    let post = || {
        gateway
            .post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "interleaved-thinking-2025-05-14")
    };
    let whole = gateway.send(post().json(&request)).await;
    assert_eq!(whole.status, 200, "{}", whole.text);
    let answer = whole.json();
    assert_eq!(answer["content"][0]["signature"], "sig-abc", "{answer}");
    assert_eq!(answer["usage"]["cache_read_input_tokens"], 10);

    let sent = native.received();
    let upstream = sent[0].json();
    assert_eq!(upstream["model"], "claude-sonnet-4-6");
    assert_eq!(upstream["top_k"], 5);
    assert_eq!(upstream["thinking"]["budget_tokens"], 1024);
    assert_eq!(
        upstream["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(
        sent[0].header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    assert_eq!(
        sent[0].header("x-api-key"),
        Some("sk-test-anthropic-secret")
    );

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let stream = gateway.send(post().json(&streamed)).await;
    assert!(stream.text.contains("signature_delta"), "{}", stream.text);
    assert!(
        stream
            .text
            .trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{}",
        stream.text
    );

    // The ledger counted the provider's usage both times: (30 + 10) + 7.
    let report = gateway.get("/admin/quotas").await.json();
    let tpm = report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["window"] == "tpm")
        .unwrap();
    assert_eq!(tpm["used"].as_f64(), Some(94.0), "{report}");
}

#[tokio::test]
async fn a_messages_request_falls_back_from_an_anthropic_429_to_a_translated_provider() {
    let limited = Scripted::start(|_: &Recorded| {
        Answer::json(
            429,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        )
    })
    .await;
    let tools = tool_provider().await;
    let gateway = Setup::new()
        .fragment(
            "anthropic",
            "anthropic",
            &limited.url("/v1"),
            &[("claude", "claude-sonnet-4-6", "chat")],
            "",
        )
        .provider("tools", &tools.url("/v1"), &[("agent-chat", "t1")])
        .fallbacks("claude: [agent-chat]\n")
        .start();
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .json(&json!({"model": "claude", "max_tokens": 64,
            "top_k": 3, "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-provider"), Some("agent-chat"));
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
    let answer = reply.json();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "hello from tools");
    assert_eq!(limited.received().len(), 1);
    // The OpenAI-shaped provider got chat, without Anthropic's `top_k`.
    let sent = tools.received()[0].json();
    assert!(
        sent.get("top_k").is_none() && sent["messages"][0]["content"] == "hi",
        "{sent}"
    );
}
