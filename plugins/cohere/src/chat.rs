//! OpenAI chat ⇄ Cohere v2 chat (`POST /v2/chat`).
//!
//! Cohere v2's messages and tools are close to OpenAI's; the differences are
//! field names (`p`, `k`, `stop_sequences`), upper-case enums
//! (`tool_choice`, `finish_reason`), content returned as blocks, usage split
//! into billed and actual tokens, and no model name in the answer.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_sdk::openai::{
    ChatCompletion, ChatMessage, ChatRequest, ToolCall, Usage, stop_sequences,
};

/// The v2 chat request for `chat`, aimed at `model`.
pub fn request(chat: &ChatRequest, model: &str) -> Result<Value, String> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let messages: Vec<Value> = chat
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<_, _>>()?;
    body.insert("messages".into(), messages.into());
    if chat.stream {
        body.insert("stream".into(), true.into());
    }
    if let Some(max) = chat.max_completion_tokens.or(chat.max_tokens) {
        body.insert("max_tokens".into(), max.into());
    }
    if let Some(tools) = &chat.tools {
        body.insert("tools".into(), tools.clone().into());
    }
    match chat.tool_choice.as_ref().and_then(Value::as_str) {
        Some("required") => {
            body.insert("tool_choice".into(), "REQUIRED".into());
        }
        Some("none") => {
            body.insert("tool_choice".into(), "NONE".into());
        }
        Some("auto") | None => {}
        Some(other) => return Err(format!("tool_choice `{other}` is not known")),
    }
    if chat.tool_choice.as_ref().is_some_and(Value::is_object) {
        return Err("Cohere cannot be told which tool to call; use `required`".into());
    }
    if let Some(format) = &chat.response_format {
        body.insert("response_format".into(), response_format(format)?);
    }
    copy_sampling(&chat.extra, &mut body);
    Ok(Value::Object(body))
}

fn message(m: &ChatMessage, i: usize) -> Result<Value, String> {
    let role = match m.role.as_str() {
        "developer" => "system",
        role @ ("system" | "user" | "assistant" | "tool") => role,
        other => {
            return Err(format!(
                "messages[{i}]: the role `{other}` is not supported"
            ));
        }
    };
    let mut out = json!({"role": role});
    if !m.content.is_null() {
        out["content"] = m.content.clone();
    }
    if let Some(calls) = &m.tool_calls {
        out["tool_calls"] = serde_json::to_value(calls).map_err(|e| e.to_string())?;
    }
    if let Some(id) = &m.tool_call_id {
        out["tool_call_id"] = id.clone().into();
    }
    Ok(out)
}

/// `json_object` as it is; `json_schema`'s schema moves up a level.
fn response_format(format: &Value) -> Result<Value, String> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text"})),
        Some("json_object") => Ok(json!({"type": "json_object"})),
        Some("json_schema") => Ok(json!({
            "type": "json_object",
            "json_schema": format.pointer("/json_schema/schema").cloned().unwrap_or(json!({})),
        })),
        _ => Err("response_format must be text, json_object or json_schema".into()),
    }
}

fn copy_sampling(extra: &Map<String, Value>, body: &mut Map<String, Value>) {
    let renamed = [
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("top_k", "k"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ];
    for (from, to) in renamed {
        if let Some(value) = extra.get(from).filter(|v| !v.is_null()) {
            body.insert(to.into(), value.clone());
        }
    }
    if let Some(stops) = stop_sequences(extra) {
        body.insert("stop_sequences".into(), stops);
    }
}

/// Cohere's `finish_reason` as OpenAI's.
pub fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "TOOL_CALL" => "tool_calls",
        // COMPLETE, STOP_SEQUENCE, ERROR, TIMEOUT
        _ => "stop",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Tokens {
    #[serde(default)]
    input_tokens: f64,
    #[serde(default)]
    output_tokens: f64,
}

#[derive(Deserialize, Default)]
pub struct CohereUsage {
    #[serde(default)]
    billed_units: Option<Tokens>,
    #[serde(default)]
    tokens: Option<Tokens>,
}

impl CohereUsage {
    /// The tokens the model saw; what was billed when that is missing.
    pub fn openai(&self) -> Option<Usage> {
        let t = self.tokens.or(self.billed_units)?;
        Some(Usage::new(t.input_tokens as u64, t.output_tokens as u64))
    }
}

#[derive(Deserialize)]
pub struct Response {
    id: String,
    #[serde(default)]
    finish_reason: Option<String>,
    message: AssistantMessage,
    #[serde(default)]
    usage: CohereUsage,
}

#[derive(Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

pub fn completion(response: Response, model: &str) -> ChatCompletion {
    let text: String = response
        .message
        .content
        .iter()
        .filter(|block| block["type"] == "text")
        .filter_map(|block| block["text"].as_str())
        .collect();
    let finish = finish_reason(response.finish_reason.as_deref().unwrap_or("COMPLETE"));
    ChatCompletion::assistant(
        response.id,
        model.to_owned(),
        text,
        response.message.tool_calls,
        finish,
        response.usage.openai(),
    )
}
