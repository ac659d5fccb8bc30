//! OpenAI's wire types, as far as adapters need them.
//!
//! Requests keep every field the client sent (`extra`), so an adapter that only
//! changes `model` never drops a parameter it does not know about.

use crate::alloc_prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Everything else (temperature, top_p, seed, user, …), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, an array of content parts (text, image_url, …), or null.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// A non-streaming chat answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    #[serde(default = "chat_completion_object")]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chat_completion_object() -> String {
    "chat.completion".to_owned()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: ChatMessage,
    pub finish_reason: Option<String>,
}

/// One `chat.completion.chunk` event of a stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// OpenAI's error body: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Value>,
}

// ------------------------------------------------------------ fast paths
//
// Adapters run on every request, so the common edits to a body are done
// without building a `serde_json::Value` tree: unknown fields are carried
// as raw JSON text and skipped fields are never allocated.

use core::fmt;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's fields in the client's order, each value as raw text.
struct RawFields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawFields(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// The client's request body with `model` set to the provider's id and,
/// when `include_usage` is set, `stream_options.include_usage: true` (so a
/// stream ends with a usage chunk). Every other field is copied through as
/// the client wrote it, in its order.
pub fn rewrite_request(body: &str, model: &str, include_usage: bool) -> Result<Vec<u8>, String> {
    let RawFields(fields) = serde_json::from_str(body).map_err(|e| {
        if e.is_data() {
            "request body must be a JSON object".to_owned()
        } else {
            format!("request body is not valid JSON: {e}")
        }
    })?;
    let mut out = Vec::with_capacity(body.len() + model.len() + 48);
    let (mut wrote_model, mut wrote_options) = (false, false);
    out.push(b'{');
    for (name, value) in &fields {
        let replacement = match name.as_str() {
            "model" if !wrote_model => {
                wrote_model = true;
                Some(json_string(model))
            }
            "model" => continue,
            "stream_options" if include_usage && !wrote_options => {
                wrote_options = true;
                Some(with_include_usage(value)?)
            }
            "stream_options" if include_usage => continue,
            _ => None,
        };
        push_field(
            &mut out,
            name,
            replacement.as_deref().unwrap_or(value.get()),
        );
    }
    if !wrote_model {
        push_field(&mut out, "model", &json_string(model));
    }
    if include_usage && !wrote_options {
        push_field(&mut out, "stream_options", r#"{"include_usage":true}"#);
    }
    out.push(b'}');
    Ok(out)
}

fn push_field(out: &mut Vec<u8>, name: &str, raw: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(json_string(name).as_bytes());
    out.push(b':');
    out.extend_from_slice(raw.as_bytes());
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The client's `stream_options` with `include_usage` turned on.
fn with_include_usage(raw: &RawValue) -> Result<String, String> {
    let mut options: Map<String, Value> = serde_json::from_str(raw.get())
        .map_err(|_| "`stream_options` must be a JSON object".to_owned())?;
    options.insert("include_usage".to_owned(), Value::Bool(true));
    serde_json::to_string(&options).map_err(|e| e.to_string())
}

/// The usage a JSON answer reports, where OpenAI (`usage`) or Groq
/// (`x_groq.usage`) put it. Only those fields are read; the rest of the body
/// is skipped, not parsed into a tree.
pub fn usage_in(json: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Groq {
        #[serde(default)]
        usage: Option<Usage>,
    }
    #[derive(Deserialize)]
    struct Carrier {
        #[serde(default)]
        usage: Option<Usage>,
        #[serde(default)]
        x_groq: Option<Groq>,
    }
    let carrier: Carrier = serde_json::from_slice(json).ok()?;
    let usage = carrier.usage.or(carrier.x_groq.and_then(|g| g.usage))?;
    // Rerankers (Jina and friends) report only `total_tokens`: all input.
    if usage.prompt_tokens + usage.completion_tokens == 0 && usage.total_tokens > 0 {
        return Some(Usage::new(usage.total_tokens, 0));
    }
    Some(usage)
}

/// Whether a chat request asked for a final usage chunk
/// (`stream_options.include_usage`), read without parsing the messages.
pub fn wants_stream_usage(body: &str) -> bool {
    #[derive(Deserialize)]
    struct Asked {
        #[serde(default)]
        stream_options: Option<StreamOptions>,
    }
    serde_json::from_str::<Asked>(body)
        .ok()
        .and_then(|asked| asked.stream_options)
        .is_some_and(|options| options.include_usage)
}

// ------------------------------------------------------------ translation helpers
//
// What adapters for non-OpenAI protocols (Anthropic, Cohere) all need.

/// The text of a message's `content`: the string itself, or the `text`
/// parts of an array joined by newlines.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Seconds since the Unix epoch, for the `created` field. Only with `std`:
/// without it a plugin has no clock.
#[cfg(feature = "std")]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Delta {
    /// The opening delta of an answer: the role, and no text yet.
    pub fn opening() -> Self {
        Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
            tool_calls: None,
        }
    }

    pub fn text(text: &str) -> Self {
        Delta {
            content: Some(text.to_owned()),
            ..Delta::default()
        }
    }

    /// A tool call's start (with `id` and name) or a piece of its arguments.
    pub fn tool_call(call: ToolCall) -> Self {
        Delta {
            tool_calls: Some(vec![call]),
            ..Delta::default()
        }
    }
}

impl ChatCompletion {
    /// A one-choice assistant answer. `content` is null when the answer is
    /// only tool calls, as OpenAI sends it. Stamped with the current time, so
    /// only with `std`.
    #[cfg(feature = "std")]
    pub fn assistant(
        id: String,
        model: String,
        text: String,
        calls: Vec<ToolCall>,
        finish_reason: &str,
        usage: Option<Usage>,
    ) -> Self {
        let content = if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        };
        ChatCompletion {
            id,
            object: chat_completion_object(),
            created: unix_now(),
            model,
            choices: vec![Choice {
                index: 0,
                message: ChatMessage {
                    role: "assistant".to_owned(),
                    content,
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    ..ChatMessage::default()
                },
                finish_reason: Some(finish_reason.to_owned()),
            }],
            usage,
        }
    }
}

/// OpenAI's `stop` (a string or an array) as the array most other APIs
/// call `stop_sequences`.
pub fn stop_sequences(extra: &Map<String, Value>) -> Option<Value> {
    match extra.get("stop")? {
        Value::String(stop) => Some(Value::Array(vec![Value::String(stop.clone())])),
        stops @ Value::Array(_) => Some(stops.clone()),
        _ => None,
    }
}

impl ChatCompletionChunk {
    /// A chunk with one choice, as JSON text.
    pub fn single(
        id: &str,
        model: &str,
        created: u64,
        delta: Delta,
        finish_reason: Option<&str>,
    ) -> String {
        let chunk = ChatCompletionChunk {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            usage: None,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }

    /// The closing chunk OpenAI sends when `stream_options.include_usage` is
    /// set: no choices, only usage.
    pub fn usage_only(id: &str, model: &str, created: u64, usage: Usage) -> String {
        let chunk = ChatCompletionChunk {
            id: id.to_owned(),
            object: chunk_object(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: Some(usage),
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    }
}

/// Writes the OpenAI chunks of one translated stream: the id, model and
/// creation time every chunk repeats, an index of its own for each tool call
/// (numbered in the order the calls open, so the arguments of parallel calls
/// never merge), and the closing usage chunk when the client asked for one.
#[derive(Debug)]
pub struct ChunkWriter {
    pub id: String,
    pub model: String,
    created: u64,
    wants_usage: bool,
    /// The upstream's index of each tool call, by OpenAI index.
    tools: Vec<u64>,
}

impl ChunkWriter {
    /// `wants_usage`: the client set `stream_options.include_usage`.
    /// Stamped with the current time, so only with `std`.
    #[cfg(feature = "std")]
    pub fn new(model: &str, wants_usage: bool) -> Self {
        ChunkWriter {
            id: String::new(),
            model: model.to_owned(),
            created: unix_now(),
            wants_usage,
            tools: Vec::new(),
        }
    }

    pub fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> String {
        ChatCompletionChunk::single(&self.id, &self.model, self.created, delta, finish_reason)
    }

    /// How many tool calls have opened so far.
    pub fn tool_calls(&self) -> usize {
        self.tools.len()
    }

    /// The chunk that opens a tool call the upstream numbers `upstream_index`.
    pub fn tool_start(
        &mut self,
        upstream_index: u64,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) -> String {
        self.tools.push(upstream_index);
        let call = ToolCall {
            index: Some(self.tools.len() as u32 - 1),
            id: id.map(str::to_owned),
            kind: Some("function".to_owned()),
            function: FunctionCall {
                name: name.map(str::to_owned),
                arguments: arguments.to_owned(),
            },
        };
        self.chunk(Delta::tool_call(call), None)
    }

    /// More arguments for the call the upstream numbers `upstream_index`;
    /// `None` for a call that was never opened.
    pub fn tool_arguments(&self, upstream_index: u64, arguments: &str) -> Option<String> {
        let index = self.tools.iter().position(|&i| i == upstream_index)?;
        let call = ToolCall {
            index: Some(index as u32),
            function: FunctionCall {
                name: None,
                arguments: arguments.to_owned(),
            },
            ..ToolCall::default()
        };
        Some(self.chunk(Delta::tool_call(call), None))
    }

    /// Ends the stream: reports `usage`, adds the usage chunk when the
    /// client asked for it, and marks the output done.
    pub fn close(&self, out: &mut crate::types::StreamOutput, usage: Option<Usage>) {
        if let Some(usage) = usage {
            out.usage = Some(usage.into());
            if self.wants_usage {
                out.chunks.push(ChatCompletionChunk::usage_only(
                    &self.id,
                    &self.model,
                    self.created,
                    usage,
                ));
            }
        }
        out.done = true;
    }
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// An embedding as OpenAI's `encoding_format: base64` gives it: the
/// little-endian bytes of its 32-bit floats, in standard base64.
pub fn embedding_base64(values: &[f64]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| (*v as f32).to_le_bytes())
        .collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn rewrite_swaps_the_model_and_keeps_everything_else() {
        let body = r#"{"model":"alias","messages":[{"role":"user","content":"h\u00e9 \"q\""}],"top_p":0.5,"x":{"deep":[1,2]}}"#;
        let out = rewrite_request(body, "vendor/model-1", false).unwrap();
        let value = parsed(&out);
        assert_eq!(value["model"], "vendor/model-1");
        assert_eq!(value["messages"][0]["content"], "hé \"q\"");
        assert_eq!(value["top_p"], 0.5);
        assert_eq!(value["x"]["deep"][1], 2);
        assert!(value.get("stream_options").is_none());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"{"model":"vendor/model-1","messages""#),
            "{text}"
        );
    }

    #[test]
    fn rewrite_turns_on_stream_usage_and_keeps_other_stream_options() {
        let body =
            r#"{"model":"a","stream":true,"stream_options":{"include_usage":false,"other":1}}"#;
        let value = parsed(&rewrite_request(body, "m", true).unwrap());
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["stream_options"]["other"], 1);
        let value = parsed(&rewrite_request(r#"{"stream":true}"#, "m", true).unwrap());
        assert_eq!(value["model"], "m");
        assert_eq!(value["stream_options"]["include_usage"], true);
    }

    #[test]
    fn rewrite_rejects_what_is_not_an_object() {
        assert_eq!(
            rewrite_request("[1]", "m", false).unwrap_err(),
            "request body must be a JSON object"
        );
        assert!(
            rewrite_request("{\"a\":", "m", false)
                .unwrap_err()
                .starts_with("request body is not valid JSON")
        );
        assert!(rewrite_request(r#"{"stream_options":3}"#, "m", true).is_err());
    }

    #[test]
    fn usage_is_read_from_openai_or_groq_places() {
        let openai = br#"{"id":"x","choices":[{"message":{"content":"usage"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#;
        assert_eq!(usage_in(openai).map(|u| u.total_tokens), Some(5));
        let groq = br#"{"usage":null,"x_groq":{"id":"r","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}"#;
        assert_eq!(usage_in(groq).map(|u| u.total_tokens), Some(2));
        assert_eq!(usage_in(br#"{"choices":[]}"#), None);
        assert_eq!(usage_in(b"not json"), None);
    }

    #[test]
    fn stream_usage_wish_is_read() {
        assert!(wants_stream_usage(
            r#"{"messages":[],"stream_options":{"include_usage":true}}"#
        ));
        assert!(!wants_stream_usage(r#"{"messages":[],"stream":true}"#));
        assert!(!wants_stream_usage("garbage"));
    }

    #[test]
    fn base64_embeddings_match_openais_encoding() {
        // 1.0f32 = 00 00 80 3f; -2.0f32 = 00 00 00 c0.
        assert_eq!(embedding_base64(&[1.0]), "AACAPw==");
        assert_eq!(embedding_base64(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(embedding_base64(&[]), "");
    }

    #[test]
    fn content_text_joins_text_parts_only() {
        let parts = serde_json::json!([
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            {"type": "text", "text": "b"}
        ]);
        assert_eq!(content_text(&parts), "a\nb");
        assert_eq!(content_text(&Value::String("s".into())), "s");
        assert_eq!(content_text(&Value::Null), "");
    }
}
