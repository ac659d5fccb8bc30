//! Anthropic Messages response → OpenAI chat completion.

use serde::Deserialize;
use serde_json::Value;
use tollgate_sdk::openai::{ChatCompletion, FunctionCall, ToolCall, Usage};

/// A Messages API response, as far as OpenAI's shape needs it.
#[derive(Deserialize)]
pub struct Message {
    pub id: String,
    pub model: String,
    pub content: Vec<Block>,
    pub stop_reason: Option<String>,
    pub usage: AnthropicUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// Thinking, redacted thinking, server tool results: not part of
    /// OpenAI's answer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// OpenAI counts cached prompt tokens as prompt tokens.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }

    pub fn openai(&self) -> Usage {
        Usage::new(self.prompt_tokens(), self.output_tokens)
    }
}

/// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn
        _ => "stop",
    }
}

pub fn completion(message: Message) -> ChatCompletion {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in message.content {
        match block {
            Block::Text { text: t } => text.push_str(&t),
            Block::ToolUse { id, name, input } => calls.push(ToolCall {
                index: None,
                id: Some(id),
                kind: Some("function".into()),
                function: FunctionCall {
                    name: Some(name),
                    arguments: input.to_string(),
                },
            }),
            Block::Other => {}
        }
    }
    let finish = finish_reason(message.stop_reason.as_deref().unwrap_or("end_turn"));
    let usage = message.usage.openai();
    ChatCompletion::assistant(message.id, message.model, text, calls, finish, Some(usage))
}
