//! OpenAI chat request → Anthropic Messages request.
//!
//! The two differ in shape more than in meaning: system prompts move to a
//! top-level field, tool calls and tool results become content blocks, a run
//! of tool results becomes one user turn (Anthropic wants the roles to
//! alternate), and `max_tokens` is required.

use serde_json::{Map, Value, json};
use tollgate_sdk::openai::{ChatMessage, ChatRequest, content_text, stop_sequences};

/// Translates `chat` for `model`; `default_max_tokens` applies when the
/// client set no cap.
pub fn messages_request(
    chat: &ChatRequest,
    model: &str,
    default_max_tokens: u64,
) -> Result<Value, String> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let system = system_prompt(&chat.messages);
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }
    body.insert("messages".into(), turns(&chat.messages)?.into());
    let max_tokens = chat
        .max_completion_tokens
        .or(chat.max_tokens)
        .unwrap_or(default_max_tokens);
    body.insert("max_tokens".into(), max_tokens.into());
    if chat.stream {
        body.insert("stream".into(), true.into());
    }
    if let Some(tools) = &chat.tools {
        body.insert("tools".into(), tools_of(tools)?.into());
    }
    if let Some(choice) = tool_choice(chat)? {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(format) = &chat.response_format
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(
            "the Anthropic Messages API has no `response_format`; ask for JSON in the prompt"
                .into(),
        );
    }
    copy_sampling(&chat.extra, &mut body);
    Ok(Value::Object(body))
}

/// System and developer messages, joined, for the top-level `system` field.
fn system_prompt(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| content_text(&m.content))
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The conversation as alternating user and assistant turns.
fn turns(messages: &[ChatMessage]) -> Result<Vec<Value>, String> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, blocks) = match message.role.as_str() {
            "system" | "developer" => continue,
            "user" => ("user", user_blocks(&message.content, i)?),
            "assistant" => ("assistant", assistant_blocks(message, i)?),
            "tool" => ("user", vec![tool_result(message, i)?]),
            other => {
                return Err(format!(
                    "messages[{i}]: the role `{other}` is not supported"
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    Ok(turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect())
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, String> {
    match content {
        Value::String(text) => Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts.iter().map(|part| content_part(part, i)).collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(format!(
            "messages[{i}].content must be a string or an array"
        )),
    }
}

fn content_part(part: &Value, i: usize) -> Result<Value, String> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
        Some("image_url") => {
            let url = part
                .pointer("/image_url/url")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages[{i}]: an image_url part has no url"))?;
            image_block(url).ok_or_else(|| format!("messages[{i}]: unsupported image url"))
        }
        Some(other) => Err(format!(
            "messages[{i}]: content parts of type `{other}` cannot be sent to Anthropic"
        )),
        None => Err(format!("messages[{i}]: a content part has no type")),
    }
}

/// A `data:` URL becomes a base64 source; an http(s) URL a url source.
fn image_block(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,")?;
        return Some(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}
        }));
    }
    (url.starts_with("https://") || url.starts_with("http://"))
        .then(|| json!({"type": "image", "source": {"type": "url", "url": url}}))
}

fn assistant_blocks(message: &ChatMessage, i: usize) -> Result<Vec<Value>, String> {
    let mut blocks = Vec::new();
    let text = content_text(&message.content);
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in message.tool_calls.iter().flatten() {
        let arguments = call.function.arguments.trim();
        let input: Value = if arguments.is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                format!("messages[{i}]: tool call arguments are not valid JSON: {e}")
            })?
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": call.id.clone().unwrap_or_default(),
            "name": call.function.name.clone().unwrap_or_default(),
            "input": input,
        }));
    }
    Ok(blocks)
}

fn tool_result(message: &ChatMessage, i: usize) -> Result<Value, String> {
    let id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| format!("messages[{i}]: a tool message needs `tool_call_id`"))?;
    Ok(json!({
        "type": "tool_result",
        "tool_use_id": id,
        "content": content_text(&message.content),
    }))
}

fn tools_of(tools: &[Value]) -> Result<Vec<Value>, String> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!(
                    "tools[{i}]: only function tools can be sent to Anthropic"
                ));
            }
            let function = &tool["function"];
            let name = function["name"]
                .as_str()
                .ok_or_else(|| format!("tools[{i}].function.name is missing"))?;
            let mut out = json!({
                "name": name,
                "input_schema": function
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(description) = function.get("description") {
                out["description"] = description.clone();
            }
            Ok(out)
        })
        .collect()
}

/// `tool_choice` and `parallel_tool_calls: false` as Anthropic's `tool_choice`.
fn tool_choice(chat: &ChatRequest) -> Result<Option<Value>, String> {
    let mut choice = match &chat.tool_choice {
        None => None,
        Some(Value::String(mode)) => Some(match mode.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => return Err(format!("tool_choice `{other}` is not known")),
        }),
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice must name a function")?;
            Some(json!({"type": "tool", "name": name}))
        }
    };
    if chat.extra.get("parallel_tool_calls") == Some(&Value::Bool(false)) && chat.tools.is_some() {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = true.into();
        }
    }
    Ok(choice)
}

/// Sampling parameters both APIs share; everything else OpenAI-only is
/// dropped (Anthropic rejects fields it does not know).
fn copy_sampling(extra: &Map<String, Value>, body: &mut Map<String, Value>) {
    if let Some(t) = extra.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0–2, Anthropic's 0–1.
        body.insert("temperature".into(), t.clamp(0.0, 1.0).into());
    }
    for key in ["top_p", "top_k", "thinking"] {
        if let Some(value) = extra.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), value.clone());
        }
    }
    if let Some(stops) = stop_sequences(extra) {
        body.insert("stop_sequences".into(), stops);
    }
    if let Some(user) = extra.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
}
