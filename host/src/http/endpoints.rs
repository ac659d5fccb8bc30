//! The OpenAI endpoints: each reads its body, checks the fields the gateway
//! itself needs, sizes the request for the ledger and hands it to the router.
//!
//! Only the fields the gateway acts on are parsed (into an envelope per
//! endpoint); the body itself goes to the adapter as the client sent it, so a
//! parameter Tollgate does not know about still reaches the provider.

use crate::api::uploads;
use crate::api::{ApiError, Body};
use crate::config::Feature;
use crate::http::validate::{
    ChatMessages, EmbeddingInput, Object, Objects, Stop, Text, ToolChoice,
};
use crate::ledger::estimate::{Estimate, Messages, TextSize};
use crate::plugins::bindings::{ClientRequest, Mode};
use crate::route::{Gateway, Inbound};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// What the gateway reads of one endpoint's JSON body.
trait Envelope: DeserializeOwned {
    const MODE: Mode;
    fn model(&self) -> &str;
    fn estimate(&self) -> Estimate;
    /// A field has a value the gateway can tell is wrong before any provider.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    fn stream(&self) -> bool {
        false
    }
    /// The fields it carries that some providers refuse.
    fn features(&self) -> Vec<Feature> {
        Vec::new()
    }
}

/// `POST /v1/chat/completions`. The messages and tools are checked and sized
/// as they are parsed ([`crate::http::validate`]); the other fields OpenAI defines
/// are read only to check their types.
#[derive(Deserialize)]
#[allow(dead_code)] // Fields read only for their types.
struct Chat {
    model: String,
    #[serde(default)]
    stream: Option<bool>,
    messages: ChatMessages,
    #[serde(default)]
    tools: Option<Objects>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
    #[serde(default)]
    response_format: Option<Object>,
    #[serde(default)]
    stream_options: Option<Object>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// Choices to generate; each spends its own completion tokens.
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    presence_penalty: Option<f64>,
    #[serde(default)]
    frequency_penalty: Option<f64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u64>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    logit_bias: Option<Object>,
    #[serde(default)]
    user: Option<Text>,
}

impl Envelope for Chat {
    const MODE: Mode = Mode::Chat;

    fn model(&self) -> &str {
        &self.model
    }

    fn estimate(&self) -> Estimate {
        let cap = self.max_completion_tokens.or(self.max_tokens);
        let choices = self.n.unwrap_or(1).max(1);
        Estimate::new(
            self.messages.0,
            self.tools.map(|t| t.0),
            cap.map(|c| c.saturating_mul(choices)),
        )
    }

    fn check(&self) -> Result<(), String> {
        if self.messages.0.items == 0 {
            return Err("`messages` must list at least one message".into());
        }
        if self.n == Some(0) {
            return Err("`n` must be at least 1".into());
        }
        Ok(())
    }

    fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    fn features(&self) -> Vec<Feature> {
        let mut features = Vec::new();
        if self.tools.is_some_and(|t| t.1 > 0) {
            features.push(Feature::Tools);
        }
        if self.response_format.is_some() {
            features.push(Feature::ResponseFormat);
        }
        features
    }
}

/// `POST /v1/embeddings`: `input` is a string, or an array of strings or of
/// token ids.
#[derive(Deserialize)]
#[allow(dead_code)] // Fields read only for their types.
struct Embeddings {
    model: String,
    input: EmbeddingInput,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    user: Option<Text>,
}

impl Envelope for Embeddings {
    const MODE: Mode = Mode::Embedding;

    fn model(&self) -> &str {
        &self.model
    }

    fn estimate(&self) -> Estimate {
        Estimate::new(self.input.0, None, Some(0))
    }

    fn check(&self) -> Result<(), String> {
        if self.input.0.bytes == 0 && self.input.0.items == 0 {
            return Err("`input` must be a non-empty string or array".into());
        }
        match self.encoding_format.as_deref() {
            None | Some("float" | "base64") => Ok(()),
            Some(other) => Err(format!(
                "`encoding_format` must be `float` or `base64`, not `{other}`"
            )),
        }
    }
}

/// `POST /v1/rerank`, in the shape Cohere and Jina share.
#[derive(Deserialize)]
struct Rerank {
    model: String,
    query: String,
    /// Strings, or objects with a `text` field.
    documents: Messages,
    #[serde(default)]
    top_n: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)] // Read only for its type.
    return_documents: Option<bool>,
}

impl Envelope for Rerank {
    const MODE: Mode = Mode::Rerank;

    fn model(&self) -> &str {
        &self.model
    }

    fn estimate(&self) -> Estimate {
        let query = TextSize::of(&self.query);
        Estimate::new(self.documents.0, Some(query), Some(0))
    }

    fn check(&self) -> Result<(), String> {
        if self.query.is_empty() {
            return Err("`query` must not be empty".into());
        }
        if self.documents.0.items == 0 {
            return Err("`documents` must list at least one document".into());
        }
        if self.top_n == Some(0) {
            return Err("`top_n` must be at least 1".into());
        }
        Ok(())
    }
}

/// `POST /v1/audio/speech`: text in, audio out.
#[derive(Deserialize)]
#[allow(dead_code)] // Fields read only for their types.
struct Speech {
    model: String,
    input: String,
    #[serde(default)]
    response_format: Option<Text>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    instructions: Option<Text>,
}

impl Envelope for Speech {
    const MODE: Mode = Mode::Speech;

    fn model(&self) -> &str {
        &self.model
    }

    fn estimate(&self) -> Estimate {
        let input = TextSize::of(&self.input);
        Estimate::new(input, None, Some(0))
    }

    fn check(&self) -> Result<(), String> {
        if self.input.is_empty() {
            return Err("`input` must not be empty".into());
        }
        Ok(())
    }
}

/// `POST /v1/images/generations`.
#[derive(Deserialize)]
struct Images {
    model: String,
    prompt: String,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // Read only for its type.
    size: Option<Text>,
    #[serde(default)]
    #[allow(dead_code)] // Read only for its type.
    quality: Option<Text>,
}

impl Envelope for Images {
    const MODE: Mode = Mode::Image;

    fn model(&self) -> &str {
        &self.model
    }

    fn estimate(&self) -> Estimate {
        let prompt = TextSize::of(&self.prompt);
        Estimate::new(prompt, None, Some(0))
    }

    fn check(&self) -> Result<(), String> {
        if self.prompt.is_empty() {
            return Err("`prompt` must not be empty".into());
        }
        if self.n == Some(0) {
            return Err("`n` must be at least 1".into());
        }
        match self.response_format.as_deref() {
            None | Some("url" | "b64_json") => Ok(()),
            Some(other) => Err(format!(
                "`response_format` must be `url` or `b64_json`, not `{other}`"
            )),
        }
    }
}

pub async fn chat(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    json_endpoint::<Chat>(gateway, request).await
}

pub async fn embeddings(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    json_endpoint::<Embeddings>(gateway, request).await
}

pub async fn rerank(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    json_endpoint::<Rerank>(gateway, request).await
}

pub async fn speech(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    json_endpoint::<Speech>(gateway, request).await
}

pub async fn images(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    json_endpoint::<Images>(gateway, request).await
}

/// `POST /v1/audio/transcriptions`: a multipart form with a `file` part and a
/// `model` field; the other text fields (`language`, `response_format`,
/// talkies' `diarization`…) go to the adapter as they came.
pub async fn transcriptions(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    let form = match uploads::read_form(request).await {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    let Some(model) = form.text("model").map(str::to_owned) else {
        return ApiError::bad_request("the form has no `model` field").into_response();
    };
    if form.uploads.get("file").is_none() {
        return ApiError::bad_request("the form has no `file` part with the audio").into_response();
    }
    let inbound = Inbound {
        request: ClientRequest {
            mode: Mode::Transcription,
            body: serde_json::Value::Object(form.fields).to_string(),
            stream: false,
            uploads: form.uploads.describe(),
        },
        estimate: Estimate::new(TextSize::default(), None, Some(0)),
        features: Vec::new(),
        uploads: form.uploads,
        native: None,
    };
    gateway.serve(&model, &inbound).await
}

/// `GET /v1/audio/voices[?model=alias]`.
pub async fn voices(gateway: &Gateway, request: &Request<Incoming>) -> Response<Body> {
    let alias = request.uri().query().and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "model")
            .map(|(_, value)| value.to_owned())
    });
    gateway.voices(alias.as_deref()).await
}

async fn json_endpoint<E: Envelope>(
    gateway: &Gateway,
    request: Request<Incoming>,
) -> Response<Body> {
    match parse::<E>(request).await {
        Ok((model, inbound)) => gateway.serve(&model, &inbound).await,
        Err(error) => error.into_response(),
    }
}

/// Reads and checks the body, keeping its text for the adapter.
async fn parse<E: Envelope>(request: Request<Incoming>) -> Result<(String, Inbound), ApiError> {
    let body = read_body(request).await?;
    inbound::<E>(&body)
}

/// A chat request made by another inbound protocol (Anthropic Messages,
/// OpenAI Responses), checked and sized as if a client had sent it to
/// `/v1/chat/completions`: the model it names and the request to route.
pub fn chat_inbound(body: &[u8]) -> Result<(String, Inbound), ApiError> {
    inbound::<Chat>(body)
}

/// Checks and sizes one endpoint's JSON body.
fn inbound<E: Envelope>(body: &[u8]) -> Result<(String, Inbound), ApiError> {
    let envelope: E = serde_json::from_slice(body)
        .map_err(|e| crate::http::validate::field_error::<E>(body, e))?;
    envelope.check().map_err(ApiError::bad_request)?;
    // serde_json skips the strings of fields it ignores without checking
    // their UTF-8, so a body it accepted may still not be text.
    let text = String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let inbound = Inbound {
        request: ClientRequest {
            mode: E::MODE,
            body: text,
            stream: envelope.stream(),
            uploads: Vec::new(),
        },
        estimate: envelope.estimate(),
        features: envelope.features(),
        uploads: Default::default(),
        native: None,
    };
    Ok((envelope.model().to_owned(), inbound))
}

/// Reads a request body, up to the gateway's limit: a body whose
/// `Content-Length` says it is larger is refused before a byte is read.
pub async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = crate::api::limits::max_body();
    if hyper::body::Body::size_hint(request.body()).lower() > limit as u64 {
        crate::api::limits::discard(request.into_body());
        return Err(ApiError::payload_too_large(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(body: &str) -> Vec<Feature> {
        serde_json::from_str::<Chat>(body).unwrap().features()
    }

    #[test]
    fn tools_and_response_format_are_noticed() {
        let plain = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(features(plain).is_empty());
        let empty_tools = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[],"response_format":null}"#;
        assert!(features(empty_tools).is_empty());
        let both = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}"#;
        assert_eq!(
            features(both),
            vec![Feature::Tools, Feature::ResponseFormat]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let embed: Embeddings =
            serde_json::from_str(r#"{"model":"e","input":"hi","encoding_format":"int8"}"#).unwrap();
        assert!(embed.check().unwrap_err().contains("encoding_format"));
        let empty: Embeddings = serde_json::from_str(r#"{"model":"e","input":[]}"#).unwrap();
        assert!(empty.check().unwrap_err().contains("input"));
        let tokens: Embeddings = serde_json::from_str(r#"{"model":"e","input":[1,2,3]}"#).unwrap();
        assert!(tokens.check().is_ok());
        let rerank: Rerank =
            serde_json::from_str(r#"{"model":"r","query":"q","documents":[]}"#).unwrap();
        assert!(rerank.check().unwrap_err().contains("documents"));
        assert!(
            serde_json::from_str::<Rerank>(r#"{"model":"r","query":"q","documents":"d"}"#).is_err()
        );
        let image: Images =
            serde_json::from_str(r#"{"model":"i","prompt":"a cat","response_format":"png"}"#)
                .unwrap();
        assert!(image.check().unwrap_err().contains("response_format"));
    }
}
