//! The adapter for Anthropic's Messages API (`POST /v1/messages`).
//!
//! Clients speak OpenAI chat; this plugin translates both ways: system
//! prompts, images, tool definitions, tool calls and results, stop reasons,
//! usage, and the event stream (see [`stream`]). The key goes in `x-api-key`,
//! placed by the host.
//!
//! `adapter_options` understood:
//! - `version`: the `anthropic-version` header (default `2023-06-01`).
//! - `default_max_tokens`: the cap sent when the client set none (Anthropic
//!   requires one; default 4096).
//! - `beta`: an `anthropic-beta` header value, for features in beta.

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
        let url = join_url(&target.base_url, "messages");
        let mut upstream = json_post(url, body.to_string().into_bytes(), kind);
        upstream.credential = Credential::Header("x-api-key".into());
        upstream
            .headers
            .push(("anthropic-version".into(), options.version));
        if let Some(beta) = options.beta {
            upstream.headers.push(("anthropic-beta".into(), beta));
        }
        Ok(upstream)
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

export_adapter!(Anthropic);

#[cfg(test)]
mod tests;
