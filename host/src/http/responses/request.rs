//! An OpenAI Responses request, read and turned into the chat request the
//! router serves. Stateless: `previous_response_id` is refused with a 400,
//! since Tollgate stores no responses (send the whole conversation as
//! `input` items instead).

use crate::api::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Value,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    /// `text.format`: plain text, or JSON (an object or a schema).
    #[serde(default)]
    text: Option<Value>,
}

fn bad(message: impl Into<String>, param: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

impl ResponsesRequest {
    /// The OpenAI chat request that asks the same, or the field at fault.
    pub fn to_chat(&self) -> Result<Value, ApiError> {
        if self.previous_response_id.is_some() {
            return Err(bad(
                "`previous_response_id` is not supported: Tollgate stores no responses; send the conversation so far as `input` items",
                "previous_response_id",
            ));
        }
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        match &self.input {
            Value::String(text) => messages.push(json!({"role": "user", "content": text})),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    add_item(item, i, &mut messages)?;
                }
            }
            _ => {
                return Err(bad(
                    "`input` must be a string or an array of items",
                    "input",
                ));
            }
        }
        if messages.iter().all(|m| m["role"] == "system") {
            return Err(bad("`input` must not be empty", "input"));
        }
        let mut chat = Map::new();
        chat.insert("model".into(), json!(self.model));
        chat.insert("messages".into(), Value::Array(messages));
        if let Some(tools) = &self.tools {
            let tools = tools
                .iter()
                .enumerate()
                .map(|(i, tool)| chat_tool(tool, i))
                .collect::<Result<Vec<_>, _>>()?;
            chat.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = &self.tool_choice {
            chat.insert("tool_choice".into(), chat_tool_choice(choice)?);
        }
        if let Some(format) = self.text.as_ref().and_then(|t| t.get("format"))
            && let Some(format) = response_format(format)?
        {
            chat.insert("response_format".into(), format);
        }
        let options = [
            ("max_tokens", self.max_output_tokens.map(Value::from)),
            ("temperature", self.temperature.map(Value::from)),
            ("top_p", self.top_p.map(Value::from)),
            (
                "parallel_tool_calls",
                self.parallel_tool_calls.map(Value::from),
            ),
            ("user", self.user.clone().map(Value::from)),
        ];
        for (name, value) in options {
            if let Some(value) = value {
                chat.insert(name.into(), value);
            }
        }
        if self.stream == Some(true) {
            chat.insert("stream".into(), json!(true));
            chat.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Ok(Value::Object(chat))
    }
}

/// One `input` item: a message, a function call the model made, or the
/// output the client got from running it. Reasoning items are skipped.
fn add_item(item: &Value, i: usize, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let param = format!("input[{i}]");
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        None | Some("message") => messages.push(message_item(item, &param)?),
        Some("function_call") => {
            let call = json!({
                "id": field(item, "call_id", &param)?,
                "type": "function",
                "function": {
                    "name": field(item, "name", &param)?,
                    "arguments": field(item, "arguments", &param)?,
                }
            });
            // Calls in a row are one assistant turn.
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        Some("function_call_output") => {
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(parts @ Value::Array(_)) => text_of(parts),
                _ => {
                    return Err(bad(
                        format!("`{param}.output` must be a string"),
                        format!("{param}.output"),
                    ));
                }
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": field(item, "call_id", &param)?,
                "content": output,
            }));
        }
        Some("reasoning") => {}
        Some(other) => {
            return Err(bad(
                format!(
                    "`{param}.type` `{other}` is not supported: use `message`, `function_call` or `function_call_output`"
                ),
                format!("{param}.type"),
            ));
        }
    }
    Ok(())
}

fn field<'a>(item: &'a Value, name: &str, param: &str) -> Result<&'a str, ApiError> {
    item.get(name).and_then(Value::as_str).ok_or_else(|| {
        bad(
            format!("`{param}.{name}` must be a string"),
            format!("{param}.{name}"),
        )
    })
}

/// A message item: its role and its content, a string or parts
/// (`input_text`, `output_text`, `input_image`).
fn message_item(item: &Value, param: &str) -> Result<Value, ApiError> {
    let role = field(item, "role", param)?;
    let role = match role {
        "user" | "assistant" | "system" => role,
        "developer" => "system",
        other => {
            return Err(bad(
                format!("`{param}.role` `{other}` must be user, assistant, system or developer"),
                format!("{param}.role"),
            ));
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => json!(text),
        Some(Value::Array(parts)) if role == "user" => {
            let parts = parts
                .iter()
                .enumerate()
                .map(|(j, part)| chat_part(part, &format!("{param}.content[{j}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(parts)
        }
        Some(parts @ Value::Array(_)) => json!(text_of(parts)),
        _ => {
            return Err(bad(
                format!("`{param}.content` must be a string or an array of parts"),
                format!("{param}.content"),
            ));
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// The text parts of a content array, joined.
fn text_of(parts: &Value) -> String {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

fn chat_part(part: &Value, param: &str) -> Result<Value, ApiError> {
    match part.get("type").and_then(Value::as_str) {
        Some("input_text" | "output_text" | "text") => {
            Ok(json!({"type": "text", "text": field(part, "text", param)?}))
        }
        Some("input_image") => {
            let url = field(part, "image_url", param)?;
            let mut image = json!({"url": url});
            if let Some(detail) = part.get("detail") {
                image["detail"] = detail.clone();
            }
            Ok(json!({"type": "image_url", "image_url": image}))
        }
        _ => Err(bad(
            format!("`{param}.type` must be `input_text` or `input_image`"),
            format!("{param}.type"),
        )),
    }
}

/// A function tool as chat declares it; built-in tools (web search, file
/// search) need OpenAI's servers, so they are refused.
fn chat_tool(tool: &Value, i: usize) -> Result<Value, ApiError> {
    let param = format!("tools[{i}]");
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        other => {
            return Err(bad(
                format!(
                    "`{param}.type` `{}` is not supported: only `function` tools can be routed",
                    other.unwrap_or("(none)")
                ),
                format!("{param}.type"),
            ));
        }
    }
    let mut function = json!({"name": field(tool, "name", &param)?});
    for key in ["description", "parameters", "strict"] {
        if let Some(value) = tool.get(key).filter(|v| !v.is_null()) {
            function[key] = value.clone();
        }
    }
    Ok(json!({"type": "function", "function": function}))
}

fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(_) if choice["type"] == "function" => Ok(json!({
            "type": "function",
            "function": {"name": field(choice, "name", "tool_choice")?}
        })),
        _ => Err(bad(
            "`tool_choice` must be `auto`, `none`, `required` or {\"type\": \"function\", \"name\": …}",
            "tool_choice",
        )),
    }
}

/// `text.format` as chat's `response_format` (none for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, ApiError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema =
                json!({"name": format.get("name").cloned().unwrap_or(json!("response"))});
            for key in ["schema", "strict", "description"] {
                if let Some(value) = format.get(key) {
                    schema[key] = value.clone();
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(bad(
            "`text.format.type` must be `text`, `json_object` or `json_schema`",
            "text.format.type",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<Value, ApiError> {
        serde_json::from_value::<ResponsesRequest>(body)
            .unwrap()
            .to_chat()
    }

    #[test]
    fn a_string_input_and_instructions_translate() {
        let chat = chat(
            json!({"model": "m", "input": "Hi", "instructions": "Be terse.",
            "max_output_tokens": 50, "stream": true}),
        )
        .unwrap();
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "Be terse."})
        );
        assert_eq!(
            chat["messages"][1],
            json!({"role": "user", "content": "Hi"})
        );
        assert_eq!(chat["max_tokens"], 50);
        assert_eq!(chat["stream_options"]["include_usage"], true);
    }

    #[test]
    fn the_function_call_round_trip_translates() {
        let chat = chat(json!({"model": "m",
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "weather"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
            ]}))
        .unwrap();
        assert_eq!(chat["tools"][0]["function"]["name"], "weather");
        assert_eq!(chat["tool_choice"]["function"]["name"], "weather");
        assert_eq!(
            chat["messages"][1]["tool_calls"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            chat["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"})
        );
    }

    #[test]
    fn stateful_and_unknown_items_are_refused_by_name() {
        let stateful = chat(json!({"model": "m", "input": "Hi", "previous_response_id": "resp_1"}));
        assert_eq!(
            stateful.unwrap_err().param.as_deref(),
            Some("previous_response_id")
        );
        let unknown = chat(json!({"model": "m", "input": [{"type": "file_search_call"}]}));
        assert_eq!(unknown.unwrap_err().param.as_deref(), Some("input[0].type"));
        let builtin = chat(json!({"model": "m", "input": "Hi", "tools": [{"type": "web_search"}]}));
        assert_eq!(builtin.unwrap_err().param.as_deref(), Some("tools[0].type"));
        let empty = chat(json!({"model": "m", "input": []}));
        assert_eq!(empty.unwrap_err().param.as_deref(), Some("input"));
    }
}
