//! Anthropic's event stream → OpenAI `chat.completion.chunk`s.
//!
//! Anthropic streams content blocks, each opened, filled by deltas and
//! closed; OpenAI streams one delta per chunk. A `tool_use` block becomes its
//! own tool call with its own `index`, in the order the blocks open, so the
//! arguments of parallel calls stream as separate deltas and never merge.

use crate::response::{AnthropicUsage, finish_reason};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use tollgate_sdk::openai::{ChatCompletionChunk, Delta, FunctionCall, ToolCall, unix_now};
use tollgate_sdk::prelude::*;

/// Feed it with [`SseStream`].
pub struct Stream {
    /// Whether the client asked for the closing usage chunk.
    wants_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: AnthropicUsage,
    /// Anthropic block index → OpenAI tool-call index.
    tools: HashMap<u64, u32>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: Start,
    },
    ContentBlockStart {
        index: u64,
        content_block: Value,
    },
    ContentBlockDelta {
        index: u64,
        delta: Value,
    },
    MessageDelta {
        delta: Value,
        #[serde(default)]
        usage: Option<Value>,
    },
    MessageStop,
    Error {
        error: Value,
    },
    /// `ping`, `content_block_stop`, and whatever Anthropic adds next.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Start {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: AnthropicUsage,
}

impl Stream {
    pub fn new(wants_usage: bool) -> Self {
        Stream {
            wants_usage,
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            usage: AnthropicUsage::default(),
            tools: HashMap::new(),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> String {
        ChatCompletionChunk::single(&self.id, &self.model, self.created, delta, finish)
    }

    fn apply(&mut self, event: Event, out: &mut StreamOutput) -> Result<(), String> {
        match event {
            Event::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
                out.chunks.push(self.chunk(Delta::opening(), None));
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => self.open_block(index, &content_block, out),
            Event::ContentBlockDelta { index, delta } => self.block_delta(index, &delta, out),
            Event::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.update_usage(&usage);
                }
                out.usage = Some(self.usage.openai().into());
                if let Some(stop) = delta.get("stop_reason").and_then(Value::as_str) {
                    out.chunks
                        .push(self.chunk(Delta::default(), Some(finish_reason(stop))));
                }
            }
            Event::MessageStop => {
                let usage = self.usage.openai();
                out.usage = Some(usage.into());
                if self.wants_usage {
                    out.chunks.push(ChatCompletionChunk::usage_only(
                        &self.id,
                        &self.model,
                        self.created,
                        usage,
                    ));
                }
                out.done = true;
            }
            Event::Error { error } => {
                let message = error["message"].as_str().unwrap_or("unknown error");
                let kind = error["type"].as_str().unwrap_or("error");
                return Err(format!("Anthropic sent {kind}: {message}"));
            }
            Event::Other => {}
        }
        Ok(())
    }

    fn open_block(&mut self, index: u64, block: &Value, out: &mut StreamOutput) {
        match block["type"].as_str() {
            Some("tool_use") => {
                let tool_index = self.tools.len() as u32;
                self.tools.insert(index, tool_index);
                let call = ToolCall {
                    index: Some(tool_index),
                    id: block["id"].as_str().map(str::to_owned),
                    kind: Some("function".into()),
                    function: FunctionCall {
                        name: block["name"].as_str().map(str::to_owned),
                        arguments: String::new(),
                    },
                };
                out.chunks.push(self.chunk(Delta::tool_call(call), None));
            }
            Some("text") => {
                if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    out.chunks.push(self.chunk(Delta::text(text), None));
                }
            }
            _ => {}
        }
    }

    fn block_delta(&mut self, index: u64, delta: &Value, out: &mut StreamOutput) {
        match delta["type"].as_str() {
            Some("text_delta") => {
                let text = delta["text"].as_str().unwrap_or_default();
                out.chunks.push(self.chunk(Delta::text(text), None));
            }
            Some("input_json_delta") => {
                let Some(&tool_index) = self.tools.get(&index) else {
                    return;
                };
                let call = ToolCall {
                    index: Some(tool_index),
                    function: FunctionCall {
                        name: None,
                        arguments: delta["partial_json"].as_str().unwrap_or_default().into(),
                    },
                    ..ToolCall::default()
                };
                out.chunks.push(self.chunk(Delta::tool_call(call), None));
            }
            // Thinking and signatures have no place in OpenAI's chunks.
            _ => {}
        }
    }

    /// `message_delta` usage is cumulative: it replaces what it names.
    fn update_usage(&mut self, usage: &Value) {
        let get = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(n) = get("output_tokens") {
            self.usage.output_tokens = n;
        }
        if let Some(n) = get("input_tokens") {
            self.usage.input_tokens = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.usage.cache_creation_input_tokens = Some(n);
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.usage.cache_read_input_tokens = Some(n);
        }
    }
}

impl EventTranslate for Stream {
    fn events(&mut self, events: Vec<SseEvent>) -> Result<StreamOutput, String> {
        let mut out = tollgate_sdk::empty_output();
        for event in events.iter().filter(|e| !e.data.is_empty()) {
            let parsed: Event = serde_json::from_str(&event.data)
                .map_err(|e| format!("unreadable Anthropic event: {e}"))?;
            self.apply(parsed, &mut out)?;
        }
        Ok(out)
    }
}
