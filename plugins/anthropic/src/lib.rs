//! The adapter for Anthropic's Messages API (`POST /v1/messages`).
//!
//! Clients speaking OpenAI chat are translated both ways: system prompts,
//! images, tool definitions, tool calls and results, stop reasons, usage,
//! and the event stream (see [`stream`]). Clients speaking Anthropic
//! Messages themselves (`/v1/messages`: Claude Code, the `anthropic` SDKs)
//! are passed through as they are ([`native`]), thinking blocks, `top_k`
//! and betas included. The key goes in `x-api-key`, placed by the host.
//!
//! `adapter_options` understood:
//! - `version`: the `anthropic-version` header (default `2023-06-01`).
//! - `default_max_tokens`: the cap sent when the client set none (Anthropic
//!   requires one; default 4096).
//! - `beta`: an `anthropic-beta` header value, for features in beta.

mod native;
mod request;
mod response;
mod stream;

use serde::Deserialize;
use tollgate_sdk::openai::{self, ChatRequest};
use tollgate_sdk::prelude::*;

struct Anthropic;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    version: String,
    default_max_tokens: u64,
    beta: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            version: "2023-06-01".into(),
            default_max_tokens: 4096,
            beta: None,
        }
    }
}

impl Adapter for Anthropic {
    type Stream = SseStream<stream::Stream>;

    fn info() -> PluginInfo {
        plugin_info("anthropic", &[Mode::Chat])
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        if request.mode != Mode::Chat {
            return Err("the Anthropic adapter serves chat only".into());
        }
        let options: Options = options(target)?;
        let chat: ChatRequest = serde_json::from_str(&request.body)
            .map_err(|e| format!("invalid chat request: {e}"))?;
        let body = request::messages_request(&chat, &target.model, options.default_max_tokens)?;
        let kind = if request.stream {
            ResponseKind::EventStream
        } else {
            ResponseKind::Json
        };
        Ok(messages_post(
            target,
            body.to_string().into_bytes(),
            kind,
            &options,
            &[],
        ))
    }

    fn native_protocols() -> Vec<String> {
        vec![native::PROTOCOL.into()]
    }

    fn build_native_request(
        target: &Target,
        protocol: &str,
        headers: &[(String, String)],
        body: &str,
        stream: bool,
    ) -> Result<UpstreamRequest, String> {
        if protocol != native::PROTOCOL {
            return Err(format!("the Anthropic adapter does not take `{protocol}`"));
        }
        let options: Options = options(target)?;
        let body = native::body(body, &target.model)?;
        let kind = if stream {
            ResponseKind::EventStream
        } else {
            ResponseKind::Json
        };
        Ok(messages_post(target, body, kind, &options, headers))
    }

    fn translate_response(
        _target: &Target,
        _request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        let message: response::Message = serde_json::from_slice(&response.body)
            .map_err(|e| format!("unreadable Anthropic message: {e}"))?;
        let completion = response::completion(message);
        let usage = completion.usage.map(Usage::from);
        let body = serde_json::to_vec(&completion).map_err(|e| e.to_string())?;
        Ok(json_reply(body, usage))
    }

    /// Anthropic's statuses mean what OpenAI's do, plus 529 (overloaded).
    fn classify_failure(_target: &Target, response: &UpstreamResponse) -> Failure {
        classify(response)
    }

    fn open_stream(_target: &Target, request: &ClientRequest) -> Self::Stream {
        SseStream::new(stream::Stream::new(openai::wants_stream_usage(
            &request.body,
        )))
    }
}

/// `POST {base_url}/messages` with the key in `x-api-key`, the
/// `anthropic-version` the client sent (or the configured one) and the
/// betas of the client and of the configuration together.
fn messages_post(
    target: &Target,
    body: Vec<u8>,
    kind: ResponseKind,
    options: &Options,
    client: &[(String, String)],
) -> UpstreamRequest {
    let url = join_url(&target.base_url, "messages");
    let mut upstream = json_post(url, body, kind);
    upstream.credential = Credential::Header("x-api-key".into());
    let version = header(client, "anthropic-version").unwrap_or(&options.version);
    upstream
        .headers
        .push(("anthropic-version".into(), version.to_owned()));
    let betas: Vec<&str> = [header(client, "anthropic-beta"), options.beta.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if !betas.is_empty() {
        upstream
            .headers
            .push(("anthropic-beta".into(), betas.join(",")));
    }
    upstream
}

export_adapter!(Anthropic);

#[cfg(test)]
mod tests;
