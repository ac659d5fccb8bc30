//! The adapter for every OpenAI-compatible API: OpenAI itself, Groq, Cerebras,
//! OpenRouter, the HuggingFace router, Mistral, Ollama's `/v1`, the claudebox
//! and pibox agent boxes, talkies and sd.cpp.
//!
//! The request goes out as the client sent it, with `model` replaced by the
//! provider's own id; the answer comes back as the provider sent it. Streams
//! ask the upstream for a final usage chunk (so the gateway can count tokens)
//! and drop it again when the client did not ask for one.
//!
//! `adapter_options` understood:
//! - `headers`: extra request headers, e.g. OpenRouter's `HTTP-Referer`.
//! - `stream_usage` (default `true`): set `stream_options.include_usage`
//!   upstream; turn off for servers that reject the field.

use crate::openai;
use crate::prelude::*;
use alloc::collections::BTreeMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// A local backend's own root: its OpenAI root (`base_url`, ending in `/v1`)
/// without the `/v1`. Control paths (`/api/ps`, `/sdcpp/v1/load`) are
/// relative to it.
pub fn backend_root(target: &Target) -> &str {
    let base = target.base_url.trim_end_matches('/');
    base.strip_suffix("/v1").unwrap_or(base)
}

/// A control call with an empty body (or JSON, when given) and no key.
pub fn control_call(method: &str, url: String, json: Option<Value>) -> UpstreamRequest {
    let (headers, body) = match json {
        Some(json) => (
            vec![("content-type".to_owned(), "application/json".to_owned())],
            Body::Bytes(json.to_string().into_bytes()),
        ),
        None => (Vec::new(), Body::Empty),
    };
    UpstreamRequest {
        method: method.to_owned(),
        url,
        headers,
        body,
        credential: Credential::Bearer,
        response: ResponseKind::Json,
    }
}

/// The OpenAI-compatible adapter, for plugins that add to it (a local
/// backend's control calls) or export it as it is (`plugins/openai`).
pub struct OpenAiCompatible;

#[derive(Deserialize)]
#[serde(default)]
struct Options {
    headers: BTreeMap<String, String>,
    stream_usage: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            headers: BTreeMap::new(),
            stream_usage: true,
        }
    }
}

fn endpoint(mode: Mode) -> &'static str {
    match mode {
        Mode::Chat => "chat/completions",
        Mode::Embedding => "embeddings",
        Mode::Rerank => "rerank",
        Mode::Transcription => "audio/transcriptions",
        Mode::Speech => "audio/speech",
        Mode::Image => "images/generations",
    }
}

fn parse_object(body: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("request body must be a JSON object".to_owned()),
        Err(e) => Err(format!("request body is not valid JSON: {e}")),
    }
}

/// The multipart form for a transcription: the client's text fields with our
/// model id (a field sent several times, such as `timestamp_granularities[]`,
/// arrives as an array and goes out as several parts), and the uploaded files
/// streamed by the host.
fn transcription_form(fields: Map<String, Value>, request: &ClientRequest) -> Body {
    let text = |name: &str, value: Value| FormPart {
        name: name.to_owned(),
        value: FormValue::Text(match value {
            Value::String(s) => s,
            other => other.to_string(),
        }),
    };
    let mut parts = Vec::new();
    for (name, value) in fields {
        match value {
            Value::Array(values) => parts.extend(values.into_iter().map(|v| text(&name, v))),
            value => parts.push(text(&name, value)),
        }
    }
    parts.extend(request.uploads.iter().map(|upload| FormPart {
        name: upload.field.clone(),
        value: FormValue::Upload(upload.field.clone()),
    }));
    Body::Multipart(parts)
}

fn response_kind(request: &ClientRequest) -> ResponseKind {
    match request.mode {
        Mode::Speech => ResponseKind::Binary,
        Mode::Chat if request.stream => ResponseKind::EventStream,
        _ => ResponseKind::Json,
    }
}

/// Usage from a JSON body, where OpenAI or Groq (`x_groq.usage`) put it.
fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value
        .get("usage")
        .filter(|u| !u.is_null())
        .or_else(|| value.pointer("/x_groq/usage"))?;
    serde_json::from_value::<openai::Usage>(usage.clone())
        .ok()
        .map(Usage::from)
}

impl Adapter for OpenAiCompatible {
    type Stream = CompatStream;

    fn info() -> PluginInfo {
        plugin_info(
            "openai",
            &[
                Mode::Chat,
                Mode::Embedding,
                Mode::Rerank,
                Mode::Transcription,
                Mode::Speech,
                Mode::Image,
            ],
        )
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        let options: Options = options(target)?;
        let url = join_url(&target.base_url, endpoint(request.mode));
        let mut upstream = if request.mode == Mode::Transcription {
            let mut fields = parse_object(&request.body)?;
            fields.insert("model".to_owned(), Value::String(target.model.clone()));
            let mut upstream = json_post(url, Vec::new(), ResponseKind::Json);
            upstream.headers.clear();
            upstream.body = transcription_form(fields, request);
            upstream
        } else {
            let include_usage = request.stream && options.stream_usage;
            let body = openai::rewrite_request(&request.body, &target.model, include_usage)?;
            json_post(url, body, response_kind(request))
        };
        upstream.headers.extend(options.headers);
        Ok(upstream)
    }

    fn translate_response(
        _target: &Target,
        _request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        let content_type = header(&response.headers, "content-type")
            .unwrap_or("application/json")
            .to_owned();
        let usage = openai::usage_in(&response.body).map(Usage::from);
        Ok(Reply {
            content_type,
            body: response.body,
            usage,
        })
    }

    fn open_stream(_target: &Target, request: &ClientRequest) -> CompatStream {
        CompatStream {
            parser: SseParser::new(),
            wants_usage: openai::wants_stream_usage(&request.body),
        }
    }
}

/// Passes OpenAI chunks through, noting usage and hiding the usage chunk from
/// clients that did not ask for it. An event that is not JSON fails the
/// stream rather than reach a client whose SDK would choke on it.
pub struct CompatStream {
    parser: SseParser,
    wants_usage: bool,
}

impl CompatStream {
    fn translate(&self, events: Vec<SseEvent>) -> Result<StreamOutput, String> {
        let mut out = crate::empty_output();
        for event in events {
            if event.data == "[DONE]" {
                out.done = true;
                continue;
            }
            if !event.data.contains("usage") {
                check_json(&event.data)?;
                out.chunks.push(event.data);
                continue;
            }
            let mut chunk =
                serde_json::from_str::<Value>(&event.data).map_err(|_| not_json(&event.data))?;
            if let Some(usage) = usage_of(&chunk) {
                out.usage = Some(usage);
            }
            if self.wants_usage {
                out.chunks.push(event.data);
                continue;
            }
            let usage_only = chunk
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if !usage_only {
                if let Some(map) = chunk.as_object_mut() {
                    map.remove("usage");
                }
                out.chunks.push(chunk.to_string());
            }
        }
        Ok(out)
    }
}

/// Checks that an event is JSON without building it (the common chunk,
/// passed through as it is).
fn check_json(data: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(data)
        .map(|_| ())
        .map_err(|_| not_json(data))
}

fn not_json(data: &str) -> String {
    let start: String = data.chars().take(60).collect();
    format!("the upstream sent a stream event that is not JSON: `{start}`")
}

impl StreamTranslate for CompatStream {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, String> {
        let events = self.parser.push(bytes);
        self.translate(events)
    }

    fn finish(&mut self) -> Result<StreamOutput, String> {
        let events = self.parser.finish().into_iter().collect();
        self.translate(events)
    }
}

/// A local model server (Ollama, a speech server, an image server) that
/// serves inference the OpenAI way and has its own calls to load and unload
/// models. Implement this, then `export_adapter!(Local<YourBackend>)`: the
/// inference side is [`OpenAiCompatible`]'s.
pub trait LocalBackend: 'static {
    fn info() -> PluginInfo;

    /// The next control call of a load or unload; see the WIT `control`.
    fn control(
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String>;
}

/// The [`Adapter`] of a [`LocalBackend`].
pub struct Local<B>(core::marker::PhantomData<B>);

impl<B: LocalBackend> Adapter for Local<B> {
    type Stream = CompatStream;

    fn info() -> PluginInfo {
        B::info()
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        OpenAiCompatible::build_request(target, request)
    }

    fn translate_response(
        target: &Target,
        request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        OpenAiCompatible::translate_response(target, request, response)
    }

    fn open_stream(target: &Target, request: &ClientRequest) -> CompatStream {
        OpenAiCompatible::open_stream(target, request)
    }

    fn control(
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        B::control(target, action, step, previous)
    }
}

/// Fails a control sequence on a non-2xx answer, naming what was asked.
pub fn expect_success(what: &str, response: &UpstreamResponse) -> Result<(), String> {
    if (200..300).contains(&response.status) {
        Ok(())
    } else {
        Err(format!(
            "{what} answered HTTP {}: {}",
            response.status,
            crate::http::error_message(&response.body)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(options: &str) -> Target {
        Target {
            provider: "p".into(),
            alias: "p-chat".into(),
            model: "upstream-id".into(),
            base_url: "https://api.example.com/v1".into(),
            mode: Mode::Chat,
            options: options.into(),
        }
    }

    fn request(body: &str, stream: bool) -> ClientRequest {
        ClientRequest {
            mode: Mode::Chat,
            body: body.into(),
            stream,
            uploads: Vec::new(),
        }
    }

    fn body_of(upstream: &UpstreamRequest) -> Value {
        match &upstream.body {
            Body::Bytes(bytes) => serde_json::from_slice(bytes).unwrap(),
            _ => panic!("expected a JSON body"),
        }
    }

    #[test]
    fn build_request_swaps_the_model_and_asks_for_stream_usage() {
        let client = request(
            r#"{"model":"p-chat","messages":[],"stream":true,"top_p":0.5}"#,
            true,
        );
        let upstream = OpenAiCompatible::build_request(&target("{}"), &client).unwrap();
        assert_eq!(upstream.url, "https://api.example.com/v1/chat/completions");
        assert_eq!(upstream.response, ResponseKind::EventStream);
        let body = body_of(&upstream);
        assert_eq!(body["model"], "upstream-id");
        assert_eq!(body["top_p"], 0.5);
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn options_add_headers_and_can_turn_stream_usage_off() {
        let options = r#"{"headers":{"X-Title":"Tollgate"},"stream_usage":false}"#;
        let client = request(r#"{"model":"p-chat","messages":[],"stream":true}"#, true);
        let upstream = OpenAiCompatible::build_request(&target(options), &client).unwrap();
        assert!(body_of(&upstream).get("stream_options").is_none());
        assert!(
            upstream
                .headers
                .contains(&("X-Title".into(), "Tollgate".into()))
        );
        let bad = OpenAiCompatible::build_request(&target(r#"{"stream_usage":"yes"}"#), &client);
        assert!(bad.unwrap_err().contains("adapter_options of p"));
    }

    #[test]
    fn usage_chunk_is_hidden_unless_the_client_asked() {
        let events = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\n\n\
            data: [DONE]\n\n";
        let mut quiet =
            OpenAiCompatible::open_stream(&target("{}"), &request(r#"{"stream":true}"#, true));
        let out = quiet.push(events).unwrap();
        assert_eq!(out.chunks.len(), 1);
        assert!(out.done);
        assert_eq!(out.usage.map(|u| u.total_tokens), Some(3));

        let asked = r#"{"stream":true,"stream_options":{"include_usage":true}}"#;
        let mut loud = OpenAiCompatible::open_stream(&target("{}"), &request(asked, true));
        assert_eq!(loud.push(events).unwrap().chunks.len(), 2);
    }

    #[test]
    fn groq_usage_is_read_from_x_groq() {
        let event = b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6,\"total_tokens\":11}}}\n\n";
        let mut stream =
            OpenAiCompatible::open_stream(&target("{}"), &request(r#"{"stream":true}"#, true));
        let out = stream.push(event).unwrap();
        assert_eq!(out.usage.map(|u| u.total_tokens), Some(11));
        assert_eq!(out.chunks.len(), 1, "the finishing chunk itself is kept");
    }
}
