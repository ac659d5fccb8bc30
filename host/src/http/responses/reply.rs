//! The router's OpenAI chat answer as a Responses `response` object: whole,
//! or as the Responses event stream (`response.created`,
//! `response.output_item.added`, `response.output_text.delta`,
//! `response.function_call_arguments.delta`, `response.output_item.done`,
//! `response.completed`; `response.failed` when the stream broke off).

use super::request::ResponsesRequest;
use crate::http::events::{Convert, frame, usage_of};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the response object echoes of the request.
pub struct Echo {
    model: String,
    instructions: Option<String>,
    tools: Value,
    tool_choice: Value,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_output_tokens: Option<u64>,
    parallel_tool_calls: bool,
}

impl Echo {
    pub fn of(request: &ResponsesRequest) -> Self {
        Echo {
            model: request.model.clone(),
            instructions: request.instructions.clone(),
            tools: json!(request.tools.clone().unwrap_or_default()),
            tool_choice: request.tool_choice.clone().unwrap_or(json!("auto")),
            temperature: request.temperature,
            top_p: request.top_p,
            max_output_tokens: request.max_output_tokens,
            parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
        }
    }

    /// The response object with these items and usage.
    fn response(
        &self,
        id: &str,
        status: &str,
        output: Vec<Value>,
        usage: Option<(u64, u64)>,
    ) -> Value {
        let incomplete = (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        json!({
            "id": id,
            "object": "response",
            "created_at": now(),
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": null,
            "store": false,
            "temperature": self.temperature,
            "text": {"format": {"type": "text"}},
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": self.top_p,
            "truncation": "disabled",
            "usage": usage.map(|(input, output)| json!({
                "input_tokens": input,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input + output,
            })),
            "metadata": {},
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An id no other response of this process has: `PREFIX_` and hex.
fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{prefix}_{nanos:x}{n:04x}")
}

fn status_of(finish: Option<&str>) -> &'static str {
    if finish == Some("length") {
        "incomplete"
    } else {
        "completed"
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &Value, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
        "name": name, "arguments": arguments})
}

/// A `chat.completion` as a `response`.
pub fn response(completion: &Value, echo: &Echo) -> Value {
    let choice = &completion["choices"][0];
    let answer = &choice["message"];
    let mut output = Vec::new();
    if let Some(text) = answer["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_item(&new_id("msg"), text, "completed"));
    }
    for call in answer["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        output.push(call_item(
            &new_id("fc"),
            &call["id"],
            &call["function"]["name"],
            arguments,
            "completed",
        ));
    }
    let usage = &completion["usage"];
    let usage = usage.is_object().then(|| {
        (
            usage["prompt_tokens"].as_u64().unwrap_or(0),
            usage["completion_tokens"].as_u64().unwrap_or(0),
        )
    });
    let status = status_of(choice["finish_reason"].as_str());
    echo.response(&new_id("resp"), status, output, usage)
}

/// The output item being streamed.
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: Value,
        name: Value,
        arguments: String,
    },
}

/// Turns OpenAI chunks into Responses events.
pub struct Events {
    echo: Echo,
    id: String,
    sequence: u64,
    started: bool,
    /// Items finished, for `response.completed`.
    done: Vec<Value>,
    open: Option<Item>,
    /// OpenAI tool-call index to the item it opened (by output index).
    tools: HashMap<u64, usize>,
    finish: Option<String>,
    usage: Option<(u64, u64)>,
}

impl Events {
    pub fn new(echo: Echo) -> Self {
        Events {
            echo,
            id: new_id("resp"),
            sequence: 0,
            started: false,
            done: Vec::new(),
            open: None,
            tools: HashMap::new(),
            finish: None,
            usage: None,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push(frame(kind, &data));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self
            .echo
            .response(&self.id, "in_progress", Vec::new(), None);
        self.emit("response.created", json!({"response": response}), out);
        let response = self
            .echo
            .response(&self.id, "in_progress", Vec::new(), None);
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    /// The output index the open item has (or the next one will have).
    fn index(&self) -> usize {
        self.done.len()
    }

    fn text(&mut self, delta: &str, out: &mut Vec<Bytes>) {
        if !matches!(self.open, Some(Item::Message { .. })) {
            self.close(out);
            let id = new_id("msg");
            let index = self.index();
            let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
            self.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
                out,
            );
            self.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
                out,
            );
            self.open = Some(Item::Message {
                id,
                text: String::new(),
            });
        }
        let index = self.index();
        let Some(Item::Message { id, text }) = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let id = id.clone();
        self.emit(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}),
            out,
        );
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let at = call["index"].as_u64().unwrap_or(0);
        if !self.tools.contains_key(&at) {
            self.close(out);
            let index = self.index();
            let (id, call_id, name) = (
                new_id("fc"),
                call["id"].clone(),
                call["function"]["name"].clone(),
            );
            let item = call_item(&id, &call_id, &name, "", "in_progress");
            self.emit(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
                out,
            );
            self.tools.insert(at, index);
            self.open = Some(Item::Call {
                id,
                call_id,
                name,
                arguments: String::new(),
            });
        }
        let Some(delta) = call["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        let index = self.index();
        // Arguments of a call already closed (calls interleaved) cannot be
        // streamed any more; providers send them in turn.
        if self.tools.get(&at) != Some(&index) {
            return;
        }
        if let Some(Item::Call { id, arguments, .. }) = &mut self.open {
            arguments.push_str(delta);
            let id = id.clone();
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": delta}),
                out,
            );
        }
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let index = self.index();
        let item = match self.open.take() {
            None => return,
            Some(Item::Message { id, text }) => {
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                        "part": {"type": "output_text", "text": text, "annotations": []}}),
                    out,
                );
                message_item(&id, &text, "completed")
            }
            Some(Item::Call {
                id,
                call_id,
                name,
                arguments,
            }) => {
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                    out,
                );
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.done.push(item);
    }
}

impl Convert for Events {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        self.start(out);
        self.usage = usage_of(chunk).or(self.usage);
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(text) = choice["delta"]["content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            self.text(text, out);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.tool_call(call, out);
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.finish = Some(finish.to_owned());
        }
    }

    fn done(&mut self, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close(out);
        let status = status_of(self.finish.as_deref());
        let output = std::mem::take(&mut self.done);
        let response = self.echo.response(&self.id, status, output, self.usage);
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(kind, json!({"response": response}), out);
    }

    fn error(&mut self, message: &str, out: &mut Vec<Bytes>) {
        self.start(out);
        let output = std::mem::take(&mut self.done);
        let mut response = self.echo.response(&self.id, "failed", output, self.usage);
        response["error"] = json!({"code": "server_error", "message": message});
        self.emit("response.failed", json!({"response": response}), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Echo {
        Echo::of(&serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap())
    }

    #[test]
    fn a_completion_becomes_a_response_with_items_and_usage() {
        let response = response(
            &json!({"choices": [{"message": {"content": "Hello", "tool_calls": [
                {"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4}}),
            &echo(),
        );
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "completed");
        assert_eq!(response["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(response["output"][1]["type"], "function_call");
        assert_eq!(response["output"][1]["call_id"], "call_1");
        assert_eq!(response["usage"]["total_tokens"], 15);
    }

    #[test]
    fn a_stream_sends_the_responses_events_in_order() {
        let mut events = Events::new(echo());
        let mut out = Vec::new();
        let delta =
            |d: Value| json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]});
        events.chunk(&delta(json!({"content": "Hi"})), &mut out);
        events.chunk(
            &delta(json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}]})),
            &mut out,
        );
        events.done(&mut out);
        let kinds: Vec<String> = out
            .iter()
            .map(|f| std::str::from_utf8(f).unwrap().lines().next().unwrap()[7..].to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
    }
}
