use super::*;
use serde_json::{Value, json};

fn target() -> Target {
    Target {
        provider: "anthropic".into(),
        alias: "claude".into(),
        model: "claude-sonnet-4-6".into(),
        base_url: "https://api.anthropic.com/v1".into(),
        mode: Mode::Chat,
        options: "{}".into(),
    }
}

fn client(body: Value) -> ClientRequest {
    ClientRequest {
        mode: Mode::Chat,
        stream: body["stream"].as_bool().unwrap_or(false),
        body: body.to_string(),
        uploads: Vec::new(),
    }
}

fn sent(body: Value) -> (UpstreamRequest, Value) {
    let upstream = Anthropic::build_request(&target(), &client(body)).unwrap();
    let Body::Bytes(bytes) = &upstream.body else {
        panic!("expected a JSON body")
    };
    let json = serde_json::from_slice(bytes).unwrap();
    (upstream, json)
}

#[test]
fn a_conversation_with_tools_becomes_a_messages_request() {
    let (upstream, body) = sent(json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here and in Oslo?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "4C"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Current weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required",
        "parallel_tool_calls": false,
        "max_tokens": 300,
        "temperature": 1.5,
        "stop": "END",
        "presence_penalty": 0.2
    }));
    assert_eq!(upstream.url, "https://api.anthropic.com/v1/messages");
    assert!(matches!(&upstream.credential, Credential::Header(h) if h == "x-api-key"));
    assert!(
        upstream
            .headers
            .contains(&("anthropic-version".into(), "2023-06-01".into()))
    );
    assert_eq!(body["model"], "claude-sonnet-4-6");
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["temperature"], 1.0);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert!(body.get("presence_penalty").is_none());
    assert_eq!(
        body["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    assert_eq!(body["tools"][0]["name"], "weather");
    assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "tool results merge into one user turn");
    assert_eq!(
        messages[0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"][1]["type"], "tool_use");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Oslo"}));
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(
        messages[2]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "4C"}
        ])
    );
}

#[test]
fn max_tokens_defaults_and_response_format_is_refused() {
    let (_, body) = sent(json!({"model": "c", "messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(body["max_tokens"], 4096);
    let refused = Anthropic::build_request(
        &target(),
        &client(json!({"model": "c", "messages": [], "response_format": {"type": "json_object"}})),
    );
    assert!(refused.unwrap_err().contains("response_format"));
}

#[test]
fn a_message_with_tool_use_becomes_a_completion() {
    let message = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5}
    });
    let reply = Anthropic::translate_response(
        &target(),
        &client(json!({})),
        UpstreamResponse {
            status: 200,
            headers: Vec::new(),
            body: message.to_string().into_bytes(),
        },
    )
    .unwrap();
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_1");
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(body["usage"]["prompt_tokens"], 25);
    assert_eq!(reply.usage.map(|u| u.total_tokens), Some(32));
}

fn event(kind: &str, data: Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// Two parallel tool calls, their argument deltas interleaved.
fn parallel_tool_stream() -> String {
    [
        event("message_start", json!({"type": "message_start", "message": {"id": "msg_s", "model": "claude-sonnet-4-6", "usage": {"input_tokens": 30, "output_tokens": 1}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Both."}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":\"Oslo\"}"}})),
        event("ping", json!({"type": "ping"})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 2})),
        event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 40}})),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat()
}

#[test]
fn parallel_tool_calls_stream_as_separate_deltas() {
    let body = json!({"stream": true, "stream_options": {"include_usage": true}});
    let mut stream = Anthropic::open_stream(&target(), &client(body));
    // Fed in awkward pieces, as a network would.
    let bytes = parallel_tool_stream().into_bytes();
    let mut chunks = Vec::new();
    let mut usage = None;
    let mut done = false;
    for piece in bytes.chunks(37) {
        let out = stream.push(piece).unwrap();
        chunks.extend(out.chunks);
        usage = out.usage.or(usage);
        done |= out.done;
    }
    assert!(done);
    assert_eq!(
        usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        Some((30, 40))
    );
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut arguments = [String::new(), String::new()];
    let mut ids = Vec::new();
    for chunk in &chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            if let Some(id) = call["id"].as_str() {
                ids.push((index, id.to_owned()));
            }
        }
    }
    assert_eq!(
        ids,
        vec![(0, "toolu_a".to_owned()), (1, "toolu_b".to_owned())]
    );
    assert_eq!(arguments[0], "{\"city\":\"Paris\"}");
    assert_eq!(arguments[1], "{\"city\":\"Oslo\"}");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str().map(|_| c))
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 70);
}

#[test]
fn an_error_event_fails_the_stream() {
    let mut stream = Anthropic::open_stream(&target(), &client(json!({"stream": true})));
    let error = event(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    let failed = stream.push(error.as_bytes()).unwrap_err();
    assert!(failed.contains("overloaded_error"), "{failed}");
}

#[test]
fn overloaded_is_unavailable() {
    let failure = Anthropic::classify_failure(
        &target(),
        &UpstreamResponse {
            status: 529,
            headers: Vec::new(),
            body: br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                .to_vec(),
        },
    );
    assert_eq!(failure.kind, FailureKind::Unavailable);
    assert_eq!(failure.message, "Overloaded");
}
