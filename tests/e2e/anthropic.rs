//! The Anthropic adapter against a mock that speaks the Messages API as
//! Anthropic documents it, through the real gateway.

use crate::support::gateway::{Setup, streamed_text};
use crate::support::mock::Mock;
use crate::support::scripted::{Answer, Recorded, Scripted};
use serde_json::{Value, json};

fn event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// Text, then two tool calls whose argument deltas interleave.
fn parallel_tools_stream() -> Vec<String> {
    let delta = |index: u64, delta: Value| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    };
    let tool = |index: u64, id: &str| {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": id, "name": "weather", "input": {}}}),
        )
    };
    vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-6", "content": [], "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        delta(0, json!({"type": "text_delta", "text": "Checking "})),
        delta(0, json!({"type": "text_delta", "text": "both."})),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        tool(1, "toolu_paris"),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}),
        ),
        tool(2, "toolu_oslo"),
        delta(
            2,
            json!({"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo\"}"}),
        ),
        delta(
            1,
            json!({"type": "input_json_delta", "partial_json": "ris\"}"}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        event("ping", json!({"type": "ping"})),
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 33}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
}

pub(crate) async fn anthropic_mock() -> Scripted {
    Scripted::start(|request: &Recorded| {
        assert_eq!(request.path, "/v1/messages");
        let body = request.json();
        if body["stream"] == true {
            return Answer::events(parallel_tools_stream());
        }
        Answer::json(200, json!({
            "id": "msg_2", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 12}
        }))
    })
    .await
}

fn weather_request(stream: bool) -> Value {
    json!({
        "model": "claude",
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        "messages": [
            {"role": "system", "content": "You answer with tools."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris and Oslo? See the map."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": "Looking.", "tool_calls": [
                {"id": "toolu_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "toolu_0", "content": "Rome: 21C"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    })
}

fn setup(mock: &Scripted) -> Setup {
    Setup::new().fragment(
        "anthropic",
        "anthropic",
        &mock.url("/v1"),
        &[("claude", "claude-sonnet-4-6", "chat")],
        "unsupported: [response_format]",
    )
}

#[tokio::test]
async fn a_tool_conversation_round_trips_through_the_messages_api() {
    let mock = anthropic_mock().await;
    let gateway = setup(&mock).start();
    let reply = gateway.chat(weather_request(false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(body["usage"]["total_tokens"], 52);

    let sent = &mock.received()[0];
    assert_eq!(sent.header("x-api-key"), Some("sk-test-anthropic-secret"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    let sent = sent.json();
    assert_eq!(sent["model"], "claude-sonnet-4-6");
    assert_eq!(sent["system"], "You answer with tools.");
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["content"][1]["source"]["media_type"],
        "image/png"
    );
    assert_eq!(messages[1]["content"][1]["type"], "tool_use");
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "toolu_0");
}

#[tokio::test]
async fn parallel_tool_calls_stream_separately() {
    let mock = anthropic_mock().await;
    let gateway = setup(&mock).start();
    let reply = gateway.chat(weather_request(true)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_text(&events), "Checking both.");
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut calls: Vec<(String, String)> = Vec::new();
    for chunk in &chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                assert_eq!(index, calls.len(), "each new call takes the next index");
                calls.push((id.to_owned(), String::new()));
            }
            calls[index]
                .1
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(
        calls,
        [
            ("toolu_paris".to_owned(), "{\"city\": \"Paris\"}".to_owned()),
            ("toolu_oslo".to_owned(), "{\"city\": \"Oslo\"}".to_owned()),
        ]
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(
        (
            usage["prompt_tokens"].as_u64(),
            usage["completion_tokens"].as_u64()
        ),
        (Some(25), Some(33))
    );
}

#[tokio::test]
async fn overloaded_falls_back_and_response_format_skips_anthropic() {
    let overloaded = Scripted::start(|_: &Recorded| {
        Answer::json(529, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    })
    .await;
    let spare = Mock::start("spare").await;
    let gateway = setup(&overloaded)
        .provider("spare", &spare.base_url(), &[("spare-chat", "s")])
        .fallbacks("claude: [spare-chat]\n")
        .start();
    let reply = gateway
        .chat(json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-provider"), Some("spare-chat"));
    assert_eq!(overloaded.received().len(), 1);

    let json_mode = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_object"}});
    let reply = gateway.chat(json_mode).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("x-tollgate-skipped"),
        Some("claude:response_format")
    );
    assert_eq!(overloaded.received().len(), 1, "anthropic was not asked");
}
