//! The Cohere adapter against a mock that speaks Cohere's v2 API as Cohere
//! documents it (chat, streamed chat with tools, embed, rerank).

use crate::support::gateway::{Setup, streamed_text};
use crate::support::scripted::{Answer, Recorded, Scripted};
use serde_json::{Value, json};

fn event(data: Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap()
    )
}

fn chat_stream() -> Vec<String> {
    let tool_start = |index: u64, id: &str, city_start: &str| {
        event(
            json!({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls":
            {"id": id, "type": "function", "function": {"name": "weather", "arguments": city_start}}}}}),
        )
    };
    let tool_delta = |index: u64, args: &str| {
        event(
            json!({"type": "tool-call-delta", "index": index, "delta": {"message": {"tool_calls": {"function": {"arguments": args}}}}}),
        )
    };
    vec![
        event(
            json!({"type": "message-start", "id": "c-1", "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": []}}}),
        ),
        event(
            json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        ),
        event(
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Two "}}}}),
        ),
        event(
            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "cities."}}}}),
        ),
        event(json!({"type": "content-end", "index": 0})),
        tool_start(0, "w1", "{\"city\":"),
        tool_start(1, "w2", ""),
        tool_delta(1, "{\"city\":\"Oslo\"}"),
        tool_delta(0, "\"Paris\"}"),
        event(json!({"type": "tool-call-end", "index": 0})),
        event(json!({"type": "tool-call-end", "index": 1})),
        event(
            json!({"type": "message-end", "delta": {"finish_reason": "TOOL_CALL",
            "usage": {"billed_units": {"input_tokens": 8, "output_tokens": 9}, "tokens": {"input_tokens": 80, "output_tokens": 9}}}}),
        ),
    ]
}

pub(crate) async fn cohere_mock() -> Scripted {
    Scripted::start(|request: &Recorded| {
        let body = request.json();
        match request.path.as_str() {
            "/v2/chat" if body["stream"] == true => Answer::events(chat_stream()),
            "/v2/chat" => Answer::json(200, json!({
                "id": "c-2", "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "Bonjour."}]},
                "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2}, "tokens": {"input_tokens": 70, "output_tokens": 2}}
            })),
            "/v2/embed" => {
                let count = body["texts"].as_array().unwrap().len();
                let vectors: Vec<Value> = (0..count).map(|i| json!([i as f64, 0.5])).collect();
                Answer::json(200, json!({"id": "e-1", "embeddings": {"float": vectors}, "texts": body["texts"],
                    "meta": {"billed_units": {"input_tokens": 6}}}))
            }
            "/v2/rerank" => Answer::json(200, json!({"id": "r-1",
                "results": [{"index": 2, "relevance_score": 0.8}, {"index": 0, "relevance_score": 0.3}],
                "meta": {"billed_units": {"search_units": 1}}})),
            other => Answer::json(404, json!({"message": format!("no {other}")})),
        }
    })
    .await
}

fn setup(mock: &Scripted) -> Setup {
    Setup::new().fragment(
        "cohere",
        "cohere",
        &mock.url("/v2"),
        &[
            ("cohere-command-a", "command-a-03-2025", "chat"),
            ("cohere-embed", "embed-v4.0", "embedding"),
            ("cohere-rerank", "rerank-v3.5", "rerank"),
        ],
        "",
    )
}

#[tokio::test]
async fn chat_streamed_and_not_speaks_cohere_v2() {
    let mock = cohere_mock().await;
    let gateway = setup(&mock).start();
    let reply = gateway
        .chat(json!({"model": "cohere-command-a", "messages": [{"role": "user", "content": "Say hello in French"}], "top_p": 0.5}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Bonjour.");
    assert_eq!(body["model"], "command-a-03-2025");
    assert_eq!(body["usage"]["prompt_tokens"], 70);
    let sent = &mock.received()[0];
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-test-cohere-secret")
    );
    assert_eq!(sent.json()["p"], 0.5);

    let streamed = gateway
        .chat(json!({"model": "cohere-command-a", "stream": true, "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}))
        .await;
    assert_eq!(streamed.status, 200, "{}", streamed.text);
    let events = streamed.events();
    assert_eq!(streamed_text(&events), "Two cities.");
    let mut arguments = vec![String::new(); 2];
    for event in events.iter().filter(|e| *e != "[DONE]") {
        let chunk: Value = serde_json::from_str(event).unwrap();
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
    assert_eq!(
        mock.received()[1].json()["tools"][0]["function"]["name"],
        "weather"
    );
}

#[tokio::test]
async fn embed_and_rerank_come_back_in_the_client_s_shape() {
    let mock = cohere_mock().await;
    let gateway = setup(&mock).start();
    let reply = gateway
        .send(
            gateway
                .post("/v1/embeddings")
                .json(&json!({"model": "cohere-embed", "input": ["a", "b", "c"]})),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(body["data"][2]["embedding"], json!([2.0, 0.5]));
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(mock.received()[0].json()["input_type"], "search_document");

    let reply = gateway
        .send(gateway.post("/v1/rerank").json(&json!({"model": "cohere-rerank", "query": "north",
            "documents": ["Rome", "Madrid", {"text": "Oslo"}], "top_n": 2, "return_documents": true})))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let results = reply.json()["results"].clone();
    assert_eq!(results[0]["index"], 2);
    assert_eq!(results[0]["document"]["text"], "Oslo");
    assert_eq!(results[1]["document"]["text"], "Rome");
    assert_eq!(
        mock.received()[1].json()["documents"],
        json!(["Rome", "Madrid", "Oslo"])
    );
}
