//! An Anthropic Messages request, read and turned into the OpenAI chat
//! request the router serves.
//!
//! Only what Anthropic documents is read; a field it does not know (Claude
//! Code sends several betas' worth) is ignored rather than refused, as the
//! chat endpoint does. What has no OpenAI equivalent is said here: `top_k`
//! and thinking blocks reach only a provider that speaks Messages natively.

use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages` (not by `count_tokens`), and the
    /// completion cap the ledger reserves.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    pub messages: Vec<Message>,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    tools: Option<Vec<Tool>>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)] // Read for its type; no OpenAI equivalent.
    top_k: Option<u64>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    pub stream: Option<bool>,
}

#[derive(Deserialize)]
pub struct Message {
    role: Role,
    content: Content,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

/// A string, or a list of blocks.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    Image {
        source: ImageSource,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    /// The model's reasoning, signed by Anthropic: meaningful only to
    /// Anthropic, so it is not sent to other providers.
    Thinking {
        #[allow(dead_code)] // Read for its type.
        thinking: String,
    },
    RedactedThinking {
        #[allow(dead_code)] // Read for its type.
        data: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
struct Tool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    /// Absent on Anthropic's server tools (`web_search_…`), which only
    /// Anthropic can run.
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    user_id: Option<String>,
}

impl MessagesRequest {
    /// What must hold beyond the types for `/v1/messages`.
    pub fn check(&self) -> Result<(), (String, &'static str)> {
        match self.max_tokens {
            None => return Err(("`max_tokens` is required".into(), "max_tokens")),
            Some(0) => return Err(("`max_tokens` must be at least 1".into(), "max_tokens")),
            Some(_) => {}
        }
        self.check_prompt()
    }

    /// What must hold of the prompt (all `count_tokens` needs).
    pub fn check_prompt(&self) -> Result<(), (String, &'static str)> {
        if self.messages.is_empty() {
            return Err((
                "`messages` must list at least one message".into(),
                "messages",
            ));
        }
        for (i, tool) in self.tools.iter().flatten().enumerate() {
            if tool.input_schema.is_none() {
                let kind = tool.kind.as_deref().unwrap_or("custom");
                return Err((
                    format!(
                        "`tools[{i}]` (`{}`, type `{kind}`) has no `input_schema`: only tools the client runs can be routed, not Anthropic's server tools",
                        tool.name
                    ),
                    "tools",
                ));
            }
        }
        Ok(())
    }

    /// The OpenAI chat request that asks the same.
    pub fn to_chat(&self) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(json!({"role": "system", "content": system.text()}));
        }
        for message in &self.messages {
            match message.role {
                Role::User => user_messages(&message.content, &mut messages),
                Role::Assistant => messages.push(assistant_message(&message.content)),
            }
        }
        let mut chat = Map::new();
        chat.insert("model".into(), json!(self.model));
        chat.insert("messages".into(), Value::Array(messages));
        if let Some(cap) = self.max_tokens {
            chat.insert("max_tokens".into(), json!(cap));
        }
        if let Some(tools) = &self.tools {
            chat.insert("tools".into(), tools.iter().map(Tool::to_chat).collect());
        }
        if let Some(choice) = &self.tool_choice {
            let (choice, parallel) = choice.to_chat();
            chat.insert("tool_choice".into(), choice);
            if parallel == Some(true) {
                chat.insert("parallel_tool_calls".into(), json!(false));
            }
        }
        if let Some(stop) = &self.stop_sequences {
            chat.insert("stop".into(), json!(stop));
        }
        if let Some(t) = self.temperature {
            chat.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.top_p {
            chat.insert("top_p".into(), json!(p));
        }
        if let Some(user) = self.metadata.as_ref().and_then(|m| m.user_id.as_ref()) {
            chat.insert("user".into(), json!(user));
        }
        if self.stream == Some(true) {
            chat.insert("stream".into(), json!(true));
            // The usage of the last chunk is what message_delta reports.
            chat.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(chat)
    }
}

impl Content {
    /// The text blocks joined (a system prompt, a tool's result).
    fn text(&self) -> String {
        match self {
            Content::Text(text) => text.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|block| match block {
                    Block::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A user turn: its tool results become `tool` messages (first, as OpenAI
/// wants them right after the assistant's calls), the rest one user message.
fn user_messages(content: &Content, out: &mut Vec<Value>) {
    let blocks = match content {
        Content::Text(text) => {
            out.push(json!({"role": "user", "content": text}));
            return;
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block {
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                let text = content.as_ref().map(Content::text).unwrap_or_default();
                let text = if *is_error == Some(true) {
                    format!("Error: {text}")
                } else {
                    text
                };
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            Block::Text { text } => parts.push(json!({"type": "text", "text": text})),
            Block::Image { source } => parts.push(json!({
                "type": "image_url",
                "image_url": {"url": source.url()}
            })),
            Block::ToolUse { .. } | Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
        }
    }
    match parts.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => {
            out.push(json!({"role": "user", "content": only["text"]}));
        }
        _ => out.push(json!({"role": "user", "content": parts})),
    }
}

/// An assistant turn: its text as content, its tool uses as tool calls.
fn assistant_message(content: &Content) -> Value {
    let blocks = match content {
        Content::Text(text) => return json!({"role": "assistant", "content": text}),
        Content::Blocks(blocks) => blocks,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block {
            Block::Text { text: part } => text.push_str(part),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()}
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

impl ImageSource {
    fn url(&self) -> String {
        match self {
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
            ImageSource::Url { url } => url.clone(),
        }
    }
}

impl Tool {
    fn to_chat(&self) -> Value {
        let mut function = json!({"name": self.name, "parameters": self.input_schema});
        if let Some(description) = &self.description {
            function["description"] = json!(description);
        }
        json!({"type": "function", "function": function})
    }
}

impl ToolChoice {
    /// The OpenAI `tool_choice`, and whether parallel calls were disabled.
    fn to_chat(&self) -> (Value, Option<bool>) {
        match self {
            ToolChoice::Auto {
                disable_parallel_tool_use,
            } => (json!("auto"), *disable_parallel_tool_use),
            ToolChoice::Any {
                disable_parallel_tool_use,
            } => (json!("required"), *disable_parallel_tool_use),
            ToolChoice::Tool {
                name,
                disable_parallel_tool_use,
            } => (
                json!({"type": "function", "function": {"name": name}}),
                *disable_parallel_tool_use,
            ),
            ToolChoice::None => (json!("none"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Value {
        let request: MessagesRequest = serde_json::from_value(body).unwrap();
        request.check().unwrap();
        request.to_chat()
    }

    #[test]
    fn system_images_and_options_translate() {
        let chat = chat(json!({
            "model": "m", "max_tokens": 100,
            "system": [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Be kind."}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
            ]}],
            "stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9, "top_k": 5,
            "metadata": {"user_id": "u-1"}, "stream": true
        }));
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "Be terse.\nBe kind."})
        );
        assert_eq!(
            chat["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBOR"
        );
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["user"], "u-1");
        assert_eq!(chat["max_tokens"], 100);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert!(chat.get("top_k").is_none());
    }

    #[test]
    fn the_tool_round_trip_translates() {
        let chat = chat(json!({
            "model": "m", "max_tokens": 100,
            "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "text", "text": "And so?"}
                ]}
            ]
        }));
        assert_eq!(
            chat["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["parallel_tool_calls"], false);
        let call = &chat["messages"][1];
        assert_eq!(call["content"], Value::Null);
        assert_eq!(
            call["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            chat["messages"][2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
        );
        assert_eq!(
            chat["messages"][3],
            json!({"role": "user", "content": "And so?"})
        );
    }

    #[test]
    fn server_tools_and_empty_requests_are_refused() {
        let request: MessagesRequest = serde_json::from_value(json!({
            "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]
        }))
        .unwrap();
        assert_eq!(request.check().unwrap_err().1, "tools");
        let empty: MessagesRequest =
            serde_json::from_value(json!({"model": "m", "max_tokens": 10, "messages": []}))
                .unwrap();
        assert_eq!(empty.check().unwrap_err().1, "messages");
    }
}
