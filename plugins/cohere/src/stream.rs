//! Cohere v2's chat event stream → OpenAI `chat.completion.chunk`s.
//!
//! Each tool call is opened by `tool-call-start` and filled by
//! `tool-call-delta`s carrying its own `index`; every call keeps an OpenAI
//! index of its own, in the order the calls open, so parallel calls never
//! merge. The tool plan (Cohere's reasoning before calling tools) is not part
//! of OpenAI's answer and is dropped.

use crate::chat::{CohereUsage, finish_reason};
use serde_json::Value;
use std::collections::HashMap;
use tollgate_sdk::openai::{ChatCompletionChunk, Delta, FunctionCall, ToolCall, Usage, unix_now};
use tollgate_sdk::prelude::*;

/// Feed it with [`SseStream`].
pub struct Stream {
    wants_usage: bool,
    id: String,
    model: String,
    created: u64,
    usage: Option<Usage>,
    /// Cohere tool-call index → OpenAI tool-call index.
    tools: HashMap<u64, u32>,
}

impl Stream {
    pub fn new(model: &str, wants_usage: bool) -> Self {
        Stream {
            wants_usage,
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            usage: None,
            tools: HashMap::new(),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> String {
        ChatCompletionChunk::single(&self.id, &self.model, self.created, delta, finish)
    }

    fn apply(&mut self, event: &Value, out: &mut StreamOutput) -> Result<(), String> {
        let message = &event["delta"]["message"];
        match event["type"].as_str().unwrap_or_default() {
            "message-start" => {
                self.id = event["id"].as_str().unwrap_or_default().to_owned();
                out.chunks.push(self.chunk(Delta::opening(), None));
            }
            "content-delta" => {
                let text = message["content"]["text"].as_str().unwrap_or_default();
                out.chunks.push(self.chunk(Delta::text(text), None));
            }
            "tool-call-start" => {
                let index = event["index"].as_u64().unwrap_or(self.tools.len() as u64);
                let tool_index = self.tools.len() as u32;
                self.tools.insert(index, tool_index);
                let call = &message["tool_calls"];
                let start = ToolCall {
                    index: Some(tool_index),
                    id: call["id"].as_str().map(str::to_owned),
                    kind: Some("function".into()),
                    function: FunctionCall {
                        name: call["function"]["name"].as_str().map(str::to_owned),
                        arguments: call["function"]["arguments"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    },
                };
                out.chunks.push(self.chunk(Delta::tool_call(start), None));
            }
            "tool-call-delta" => {
                let index = event["index"].as_u64().unwrap_or_default();
                let Some(&tool_index) = self.tools.get(&index) else {
                    return Ok(());
                };
                let arguments = message["tool_calls"]["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default();
                let call = ToolCall {
                    index: Some(tool_index),
                    function: FunctionCall {
                        name: None,
                        arguments: arguments.to_owned(),
                    },
                    ..ToolCall::default()
                };
                out.chunks.push(self.chunk(Delta::tool_call(call), None));
            }
            "message-end" => self.end(&event["delta"], out)?,
            // content-start/-end, tool-plan-delta, tool-call-end, citations.
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, delta: &Value, out: &mut StreamOutput) -> Result<(), String> {
        let reason = delta["finish_reason"].as_str().unwrap_or("COMPLETE");
        if reason == "ERROR" {
            let message = delta["error"].as_str().unwrap_or("the model failed");
            return Err(format!("Cohere ended the stream with an error: {message}"));
        }
        let usage: CohereUsage = serde_json::from_value(delta["usage"].clone()).unwrap_or_default();
        self.usage = usage.openai();
        out.usage = self.usage.map(Into::into);
        out.chunks
            .push(self.chunk(Delta::default(), Some(finish_reason(reason))));
        if let (true, Some(usage)) = (self.wants_usage, self.usage) {
            out.chunks.push(ChatCompletionChunk::usage_only(
                &self.id,
                &self.model,
                self.created,
                usage,
            ));
        }
        out.done = true;
        Ok(())
    }
}

impl EventTranslate for Stream {
    fn events(&mut self, events: Vec<SseEvent>) -> Result<StreamOutput, String> {
        let mut out = tollgate_sdk::empty_output();
        for event in events
            .iter()
            .filter(|e| !e.data.is_empty() && e.data != "[DONE]")
        {
            let value: Value = serde_json::from_str(&event.data)
                .map_err(|e| format!("unreadable Cohere event: {e}"))?;
            self.apply(&value, &mut out)?;
        }
        Ok(out)
    }
}
