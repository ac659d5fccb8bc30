//! The adapter for Cohere's v2 API: chat (with tools, streamed or not),
//! embed and rerank, each translated to and from OpenAI's shapes.
//!
//! A fragment's `base_url` is Cohere's v2 root, `https://api.cohere.com/v2`.
//!
//! `adapter_options` understood:
//! - `input_type`: what embedded texts are, when the client does not say
//!   (`search_document`, `search_query`, `classification`, `clustering`;
//!   default `search_document`).

mod chat;
mod retrieval;
mod stream;

use serde::Deserialize;
use tollgate_sdk::openai::{self, ChatRequest};
use tollgate_sdk::prelude::*;

struct Cohere;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Options {
    input_type: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            input_type: "search_document".into(),
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

impl Adapter for Cohere {
    type Stream = SseStream<stream::Stream>;

    fn info() -> PluginInfo {
        plugin_info("cohere", &[Mode::Chat, Mode::Embedding, Mode::Rerank])
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        let options: Options = options(target)?;
        let (path, body, kind) = match request.mode {
            Mode::Chat => {
                let chat: ChatRequest = serde_json::from_str(&request.body)
                    .map_err(|e| format!("invalid chat request: {e}"))?;
                let kind = if request.stream {
                    ResponseKind::EventStream
                } else {
                    ResponseKind::Json
                };
                ("chat", chat::request(&chat, &target.model)?, kind)
            }
            Mode::Embedding => {
                let body =
                    retrieval::embed_request(&request.body, &target.model, &options.input_type)?;
                ("embed", body, ResponseKind::Json)
            }
            Mode::Rerank => {
                let body = retrieval::rerank_request(&request.body, &target.model)?;
                ("rerank", body, ResponseKind::Json)
            }
            other => return Err(format!("the Cohere adapter does not serve {other:?}")),
        };
        let url = join_url(&target.base_url, path);
        Ok(json_post(url, to_json(&body)?, kind))
    }

    fn translate_response(
        target: &Target,
        request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        match request.mode {
            Mode::Chat => {
                let parsed: chat::Response = serde_json::from_slice(&response.body)
                    .map_err(|e| format!("unreadable Cohere chat response: {e}"))?;
                let completion = chat::completion(parsed, &target.model);
                let usage = completion.usage.map(Usage::from);
                Ok(json_reply(to_json(&completion)?, usage))
            }
            Mode::Embedding => {
                let (body, usage) =
                    retrieval::embeddings_reply(&request.body, &target.model, &response.body)?;
                Ok(json_reply(to_json(&body)?, Some(usage.into())))
            }
            Mode::Rerank => {
                let body = retrieval::rerank_reply(&request.body, &target.model, &response.body)?;
                Ok(json_reply(to_json(&body)?, None))
            }
            other => Err(format!("the Cohere adapter does not serve {other:?}")),
        }
    }

    /// Cohere's trial keys answer 429 both for the per-minute limit and for
    /// the monthly cap; only the second is a spent quota. 498 is Cohere's
    /// "invalid token".
    fn classify_failure(_target: &Target, response: &UpstreamResponse) -> Failure {
        let mut failure = classify(response);
        let message = failure.message.to_ascii_lowercase();
        if response.status == 429 && message.contains("trial key") && message.contains("month") {
            failure.kind = FailureKind::QuotaExhausted;
        }
        if response.status == 498 {
            failure.kind = FailureKind::Auth;
        }
        failure
    }

    fn open_stream(target: &Target, request: &ClientRequest) -> Self::Stream {
        let wants_usage = openai::wants_stream_usage(&request.body);
        SseStream::new(stream::Stream::new(&target.model, wants_usage))
    }
}

export_adapter!(Cohere);

#[cfg(test)]
mod tests;
