use super::*;
use serde_json::{Value, json};

fn target(mode: Mode) -> Target {
    Target {
        provider: "cohere".into(),
        alias: "cohere-x".into(),
        model: "command-a-03-2025".into(),
        base_url: "https://api.cohere.com/v2".into(),
        mode,
        options: "{}".into(),
    }
}

fn client(mode: Mode, body: Value) -> ClientRequest {
    ClientRequest {
        mode,
        stream: body["stream"].as_bool().unwrap_or(false),
        body: body.to_string(),
        uploads: Vec::new(),
    }
}

fn sent(mode: Mode, body: Value) -> (String, Value) {
    let upstream = Cohere::build_request(&target(mode), &client(mode, body)).unwrap();
    let Body::Bytes(bytes) = &upstream.body else {
        panic!("expected a JSON body")
    };
    (upstream.url, serde_json::from_slice(bytes).unwrap())
}

fn reply(mode: Mode, request: Value, body: Value) -> (Value, Option<Usage>) {
    let reply = Cohere::translate_response(
        &target(mode),
        &client(mode, request),
        UpstreamResponse {
            status: 200,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        },
    )
    .unwrap();
    (serde_json::from_slice(&reply.body).unwrap(), reply.usage)
}

#[test]
fn chat_requests_rename_what_cohere_names_differently() {
    let (url, body) = sent(
        Mode::Chat,
        json!({
            "model": "cohere-x",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "top_p": 0.9,
            "stop": ["END"],
            "max_tokens": 50,
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
        }),
    );
    assert_eq!(url, "https://api.cohere.com/v2/chat");
    assert_eq!(body["model"], "command-a-03-2025");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][2].get("content").is_none());
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "c1");
    assert_eq!(body["messages"][3]["tool_call_id"], "c1");
    assert_eq!(body["tool_choice"], "REQUIRED");
    assert_eq!(body["p"], 0.9);
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(
        body["response_format"],
        json!({"type": "json_object", "json_schema": {"type": "object"}})
    );
}

#[test]
fn chat_responses_become_completions() {
    let (body, usage) = reply(
        Mode::Chat,
        json!({"model": "cohere-x", "messages": []}),
        json!({
            "id": "r1",
            "finish_reason": "TOOL_CALL",
            "message": {"role": "assistant", "tool_plan": "I will look it up.",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "usage": {"billed_units": {"input_tokens": 9, "output_tokens": 3}, "tokens": {"input_tokens": 120, "output_tokens": 3}}
        }),
    );
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "weather"
    );
    assert_eq!(body["model"], "command-a-03-2025");
    assert_eq!(body["usage"]["prompt_tokens"], 120);
    assert_eq!(usage.map(|u| u.total_tokens), Some(123));
}

fn event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

#[test]
fn parallel_tool_calls_stream_as_separate_deltas() {
    let call_start = |index: u64, id: &str| {
        event(
            json!({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls":
            {"id": id, "type": "function", "function": {"name": "weather", "arguments": ""}}}}}),
        )
    };
    let call_delta = |index: u64, args: &str| {
        event(
            json!({"type": "tool-call-delta", "index": index, "delta": {"message": {"tool_calls":
            {"function": {"arguments": args}}}}}),
        )
    };
    let events = [
        event(json!({"type": "message-start", "id": "s1", "delta": {"message": {"role": "assistant"}}})),
        event(json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "Checking both."}}})),
        call_start(0, "ca"),
        call_delta(0, "{\"city\":"),
        call_start(1, "cb"),
        call_delta(1, "{\"city\":\"Oslo\"}"),
        call_delta(0, "\"Paris\"}"),
        event(json!({"type": "tool-call-end", "index": 0})),
        event(json!({"type": "tool-call-end", "index": 1})),
        event(json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL",
            "usage": {"tokens": {"input_tokens": 50, "output_tokens": 20}}}})),
    ]
    .concat();
    let body = json!({"stream": true, "stream_options": {"include_usage": true}});
    let mut stream = Cohere::open_stream(&target(Mode::Chat), &client(Mode::Chat, body));
    let mut chunks = Vec::new();
    let mut done = false;
    let mut usage = None;
    for piece in events.as_bytes().chunks(29) {
        let out = stream.push(piece).unwrap();
        chunks.extend(out.chunks);
        done |= out.done;
        usage = out.usage.or(usage);
    }
    assert!(done);
    assert_eq!(usage.map(|u| u.total_tokens), Some(70));
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let mut arguments = [String::new(), String::new()];
    for chunk in &chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(arguments, ["{\"city\":\"Paris\"}", "{\"city\":\"Oslo\"}"]);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.last().unwrap()["usage"]["prompt_tokens"], 50);
    assert!(
        chunks
            .iter()
            .all(|c| !c.to_string().contains("Checking both"))
    );
}

#[test]
fn embeddings_go_out_as_texts_and_come_back_as_openai_lists() {
    let request =
        json!({"model": "cohere-embed", "input": ["a", "b"], "encoding_format": "base64"});
    let (url, body) = sent(Mode::Embedding, request.clone());
    assert_eq!(url, "https://api.cohere.com/v2/embed");
    assert_eq!(body["texts"], json!(["a", "b"]));
    assert_eq!(body["input_type"], "search_document");
    assert_eq!(body["embedding_types"], json!(["float"]));
    let (out, usage) = reply(
        Mode::Embedding,
        request,
        json!({"id": "e", "embeddings": {"float": [[1.0], [-2.0]]}, "texts": ["a", "b"],
               "meta": {"billed_units": {"input_tokens": 2}}}),
    );
    assert_eq!(out["object"], "list");
    assert_eq!(out["data"][0]["embedding"], "AACAPw==");
    assert_eq!(out["data"][1]["index"], 1);
    assert_eq!(out["usage"]["prompt_tokens"], 2);
    assert_eq!(usage.map(|u| u.prompt_tokens), Some(2));
    let tokens = Cohere::build_request(
        &target(Mode::Embedding),
        &client(Mode::Embedding, json!({"model": "e", "input": [[1, 2]]})),
    );
    assert!(tokens.unwrap_err().contains("text only"));
}

#[test]
fn rerank_returns_documents_when_asked() {
    let request = json!({"model": "cohere-rerank", "query": "capital", "top_n": 2,
        "documents": ["Paris is in France", {"text": "Oslo is in Norway"}], "return_documents": true});
    let (url, body) = sent(Mode::Rerank, request.clone());
    assert_eq!(url, "https://api.cohere.com/v2/rerank");
    assert_eq!(
        body["documents"],
        json!(["Paris is in France", "Oslo is in Norway"])
    );
    assert_eq!(body["top_n"], 2);
    let (out, _) = reply(
        Mode::Rerank,
        request,
        json!({"id": "r", "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}],
               "meta": {"billed_units": {"search_units": 1}}}),
    );
    assert_eq!(out["results"][0]["document"]["text"], "Oslo is in Norway");
    assert_eq!(out["results"][1]["relevance_score"], 0.1);
}

#[test]
fn the_monthly_trial_cap_is_a_spent_quota() {
    let failure = |status: u16, message: &str| {
        Cohere::classify_failure(
            &target(Mode::Chat),
            &UpstreamResponse {
                status,
                headers: Vec::new(),
                body: json!({"message": message}).to_string().into_bytes(),
            },
        )
    };
    let monthly = failure(
        429,
        "You are using a Trial key, which is limited to 1000 API calls / month.",
    );
    assert_eq!(monthly.kind, FailureKind::QuotaExhausted);
    assert_eq!(
        failure(429, "too many requests").kind,
        FailureKind::RateLimited
    );
    assert_eq!(failure(498, "invalid api token").kind, FailureKind::Auth);
}
