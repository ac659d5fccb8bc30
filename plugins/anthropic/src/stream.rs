//! Anthropic's event stream → OpenAI `chat.completion.chunk`s.
//!
//! Anthropic streams content blocks, each opened, filled by deltas and
//! closed; OpenAI streams one delta per chunk. A `tool_use` block becomes its
//! own tool call with its own `index`, in the order the blocks open, so the
//! arguments of parallel calls stream as separate deltas and never merge.

use crate::response::{AnthropicUsage, finish_reason};
use serde::Deserialize;
use serde_json::Value;
use tollgate_sdk::openai::{ChunkWriter, Delta};
use tollgate_sdk::prelude::*;

/// Feed it with [`SseStream`].
pub struct Stream {
    out: ChunkWriter,
    usage: AnthropicUsage,
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
            out: ChunkWriter::new("", wants_usage),
            usage: AnthropicUsage::default(),
        }
    }

    fn apply(&mut self, event: Event, out: &mut StreamOutput) -> Result<(), String> {
        match event {
            Event::MessageStart { message } => {
                self.out.id = message.id;
                self.out.model = message.model;
                self.usage = message.usage;
                out.chunks.push(self.out.chunk(Delta::opening(), None));
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
                    let finish = Some(finish_reason(stop));
                    out.chunks.push(self.out.chunk(Delta::default(), finish));
                }
            }
            Event::MessageStop => self.out.close(out, Some(self.usage.openai())),
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
                let (id, name) = (block["id"].as_str(), block["name"].as_str());
                out.chunks.push(self.out.tool_start(index, id, name, ""));
            }
            Some("text") => {
                if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                    out.chunks.push(self.out.chunk(Delta::text(text), None));
                }
            }
            _ => {}
        }
    }

    fn block_delta(&self, index: u64, delta: &Value, out: &mut StreamOutput) {
        match delta["type"].as_str() {
            Some("text_delta") => {
                let text = delta["text"].as_str().unwrap_or_default();
                out.chunks.push(self.out.chunk(Delta::text(text), None));
            }
            Some("input_json_delta") => {
                let arguments = delta["partial_json"].as_str().unwrap_or_default();
                out.chunks.extend(self.out.tool_arguments(index, arguments));
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
