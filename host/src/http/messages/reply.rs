//! The router's OpenAI chat answer as an Anthropic message: whole, or as
//! Anthropic's event sequence (`message_start`, `ping`, per block
//! `content_block_start` / `content_block_delta` / `content_block_stop`,
//! `message_delta` with the stop reason and usage, `message_stop`; an
//! `error` event when the stream broke off).

use crate::http::events::{Convert, frame, usage_of};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Anthropic's stop reason for an OpenAI finish reason.
fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// The model's reasoning, under the names OpenAI-compatible servers use.
fn reasoning(message: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| message.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// `msg_…` from the completion's id, so one request's id is traceable.
fn message_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) => format!("msg_{id}"),
        None => "msg_tollgate".to_owned(),
    }
}

/// A `chat.completion` as an Anthropic `message`.
pub fn message(completion: &Value) -> Value {
    let choice = &completion["choices"][0];
    let answer = &choice["message"];
    let mut content = Vec::new();
    if let Some(thinking) = reasoning(answer) {
        content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
    }
    if let Some(text) = answer["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in answer["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": input,
        }));
    }
    let usage = &completion["usage"];
    json!({
        "id": message_id(completion["id"].as_str()),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": {
            "input_tokens": usage["prompt_tokens"].as_u64().unwrap_or(0),
            "output_tokens": usage["completion_tokens"].as_u64().unwrap_or(0),
        },
    })
}

/// The kind of the content block open now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Thinking,
    Text,
    Tool,
}

/// Turns OpenAI chunks into Anthropic's events.
pub struct Events {
    model: String,
    /// The prompt's estimated size, reported in `message_start` until the
    /// provider's usage arrives in `message_delta`.
    input_estimate: u64,
    started: bool,
    open: Option<(u64, Block)>,
    next_index: u64,
    /// OpenAI tool-call index to content block index.
    tools: HashMap<u64, u64>,
    stop_reason: &'static str,
    usage: Option<(u64, u64)>,
}

impl Events {
    pub fn new(model: &str, input_estimate: u64) -> Self {
        Events {
            model: model.to_owned(),
            input_estimate,
            started: false,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            stop_reason: "end_turn",
            usage: None,
        }
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(frame(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(id), "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
            }}),
        ));
        out.push(frame("ping", &json!({"type": "ping"})));
    }

    /// Opens a block of `kind` (closing the one open) unless it is open.
    fn open(&mut self, kind: Block, block: Value, out: &mut Vec<Bytes>) -> u64 {
        if let Some((index, open)) = self.open
            && open == kind
            && kind != Block::Tool
        {
            return index;
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        out.push(frame(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn delta(index: u64, delta: Value, out: &mut Vec<Bytes>) {
        out.push(frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
    }

    fn tool_calls(&mut self, calls: &[Value], out: &mut Vec<Bytes>) {
        for call in calls {
            let at = call["index"].as_u64().unwrap_or(0);
            let index = match self.tools.get(&at) {
                Some(&index) => index,
                None => {
                    let block = json!({"type": "tool_use", "id": call["id"],
                        "name": call["function"]["name"], "input": {}});
                    let index = self.open(Block::Tool, block, out);
                    self.tools.insert(at, index);
                    index
                }
            };
            if let Some(arguments) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                Self::delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                    out,
                );
            }
        }
    }
}

impl Convert for Events {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        self.start(chunk["id"].as_str(), out);
        self.usage = usage_of(chunk).or(self.usage);
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(thinking) = reasoning(delta) {
            let index = self.open(
                Block::Thinking,
                json!({"type": "thinking", "thinking": ""}),
                out,
            );
            Self::delta(
                index,
                json!({"type": "thinking_delta", "thinking": thinking}),
                out,
            );
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = self.open(Block::Text, json!({"type": "text", "text": ""}), out);
            Self::delta(index, json!({"type": "text_delta", "text": text}), out);
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            self.tool_calls(calls, out);
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop_reason = stop_reason(Some(finish));
        }
    }

    fn done(&mut self, out: &mut Vec<Bytes>) {
        self.start(None, out);
        self.close(out);
        let (input, output) = self.usage.unwrap_or((self.input_estimate, 0));
        out.push(frame(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                "usage": {"input_tokens": input, "output_tokens": output}}),
        ));
        out.push(frame("message_stop", &json!({"type": "message_stop"})));
    }

    fn error(&mut self, message: &str, out: &mut Vec<Bytes>) {
        out.push(frame("error", &super::errors::body(500, message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(frames: &[Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                text.lines().next().unwrap()["event: ".len()..].to_owned()
            })
            .collect()
    }

    #[test]
    fn a_completion_with_a_tool_call_becomes_a_message() {
        let message = message(&json!({
            "id": "chatcmpl-1", "model": "m",
            "choices": [{"message": {"role": "assistant", "content": "Let me look.",
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
        }));
        assert_eq!(message["id"], "msg_chatcmpl-1");
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(message["content"][0]["text"], "Let me look.");
        assert_eq!(message["content"][1]["input"], json!({"city": "Paris"}));
        assert_eq!(
            message["usage"],
            json!({"input_tokens": 11, "output_tokens": 4})
        );
    }

    #[test]
    fn a_stream_follows_anthropics_event_sequence() {
        let mut events = Events::new("m", 9);
        let mut out = Vec::new();
        let chunk = |delta: Value, finish: Value| json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        events.chunk(
            &chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null),
            &mut out,
        );
        events.chunk(&chunk(json!({"content": " there"}), Value::Null), &mut out);
        events.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}),
                Value::Null,
            ),
            &mut out,
        );
        events.chunk(
            &chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                json!("tool_calls"),
            ),
            &mut out,
        );
        events.chunk(
            &json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
            &mut out,
        );
        events.done(&mut out);
        assert_eq!(
            kinds(&out),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta = std::str::from_utf8(&out[10]).unwrap();
        assert!(delta.contains(r#""stop_reason":"tool_use""#), "{delta}");
        assert!(delta.contains(r#""output_tokens":3"#), "{delta}");
    }
}
