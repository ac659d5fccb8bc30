//! Cohere v2's chat event stream → OpenAI `chat.completion.chunk`s.
//!
//! Each tool call is opened by `tool-call-start` and filled by
//! `tool-call-delta`s carrying its own `index`; every call keeps an OpenAI
//! index of its own, in the order the calls open, so parallel calls never
//! merge. The tool plan (Cohere's reasoning before calling tools) is not part
//! of OpenAI's answer and is dropped.

use crate::chat::{CohereUsage, finish_reason};
use serde_json::Value;
use tollgate_sdk::openai::{ChunkWriter, Delta};
use tollgate_sdk::prelude::*;

/// Feed it with [`SseStream`].
pub struct Stream {
    out: ChunkWriter,
}

impl Stream {
    pub fn new(model: &str, wants_usage: bool) -> Self {
        Stream {
            out: ChunkWriter::new(model, wants_usage),
        }
    }

    fn apply(&mut self, event: &Value, out: &mut StreamOutput) -> Result<(), String> {
        let message = &event["delta"]["message"];
        match event["type"].as_str().unwrap_or_default() {
            "message-start" => {
                self.out.id = event["id"].as_str().unwrap_or_default().to_owned();
                out.chunks.push(self.out.chunk(Delta::opening(), None));
            }
            "content-delta" => {
                let text = message["content"]["text"].as_str().unwrap_or_default();
                out.chunks.push(self.out.chunk(Delta::text(text), None));
            }
            "tool-call-start" => {
                let call = &message["tool_calls"];
                let opened = self.out.tool_calls() as u64;
                let index = event["index"].as_u64().unwrap_or(opened);
                let chunk = self.out.tool_start(
                    index,
                    call["id"].as_str(),
                    call["function"]["name"].as_str(),
                    call["function"]["arguments"].as_str().unwrap_or_default(),
                );
                out.chunks.push(chunk);
            }
            "tool-call-delta" => {
                let index = event["index"].as_u64().unwrap_or_default();
                let arguments = message["tool_calls"]["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default();
                out.chunks.extend(self.out.tool_arguments(index, arguments));
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
        let finish = Some(finish_reason(reason));
        out.chunks.push(self.out.chunk(Delta::default(), finish));
        self.out.close(out, usage.openai());
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
