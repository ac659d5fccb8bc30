//! Anthropic's Messages API, inbound: `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, for Claude Code, pi and the `anthropic`
//! SDKs.
//!
//! A request is read as Anthropic documents it ([`request`]), turned into
//! the OpenAI chat request the router serves, so aliases, fallback chains,
//! ledgers, cooldowns, GPU leases and policies apply unchanged, and the
//! answer is turned back ([`reply`]), whole or as Anthropic's event
//! stream. A candidate whose adapter speaks Messages itself (the
//! `anthropic` plugin) is sent the client's own body instead and its
//! answer comes back untouched ([`passthrough`]). Every error is in
//! Anthropic's shape ([`errors`]).

pub mod errors;
mod passthrough;
mod reply;
mod request;

use crate::api::{ApiError, Body, json_response};
use crate::http::endpoints;
use crate::http::events;
use crate::route::native::{NativeRequest, Untranslated};
use crate::route::{Gateway, Inbound};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use request::MessagesRequest;

/// `POST /v1/messages`.
pub async fn messages(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    let headers = protocol_headers(&request);
    let (model, inbound) = match read(request, MessagesRequest::check).await {
        Ok(read) => match routed(read, headers) {
            Ok(routed) => routed,
            Err(error) => return errors::response(&error),
        },
        Err(error) => return errors::response(&error),
    };
    let estimate = inbound.estimate.prompt_tokens;
    let response = gateway.serve(&model, &inbound).await;
    answer(response, &model, estimate).await
}

/// `POST /v1/messages/count_tokens`: the host's estimate of the prompt's
/// size (the one its ledgers reserve), not a provider's tokenizer count.
pub async fn count_tokens(request: Request<Incoming>) -> Response<Body> {
    let counted = match read(request, MessagesRequest::check_prompt).await {
        Ok(read) => endpoints::chat_inbound(&read.chat),
        Err(error) => Err(error),
    };
    match counted {
        Ok((_, inbound)) => json_response(
            StatusCode::OK,
            serde_json::json!({"input_tokens": inbound.estimate.prompt_tokens}).to_string(),
        ),
        Err(error) => errors::response(&error),
    }
}

/// A Messages body, read and checked.
struct Read {
    request: MessagesRequest,
    /// As the client sent it.
    body: String,
    /// Its translation to OpenAI chat.
    chat: Vec<u8>,
}

/// Reads and checks a Messages body.
async fn read(
    request: Request<Incoming>,
    check: fn(&MessagesRequest) -> Result<(), (String, &'static str)>,
) -> Result<Read, ApiError> {
    let body = endpoints::read_body(request).await?;
    parse(&body, check)
}

/// Checks a Messages body with `check` and translates it to chat.
fn parse(
    body: &[u8],
    check: fn(&MessagesRequest) -> Result<(), (String, &'static str)>,
) -> Result<Read, ApiError> {
    let parsed: MessagesRequest = serde_json::from_slice(body)
        .map_err(|e| crate::http::validate::field_error::<MessagesRequest>(body, e))?;
    check(&parsed).map_err(|(message, param)| ApiError::bad_request(message).with_param(param))?;
    let chat = serde_json::to_vec(&parsed.to_chat())
        .map_err(|e| ApiError::bad_request(format!("could not translate the request: {e}")))?;
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
    Ok(Read {
        request: parsed,
        body,
        chat,
    })
}

/// Checks and translates a Messages body as `POST /v1/messages` does, for
/// the fuzz targets: the model it names, or why it is refused.
pub fn parse_messages(body: &[u8]) -> Result<String, ApiError> {
    let read = parse(body, MessagesRequest::check)?;
    let (model, _) = routed(read, Vec::new())?;
    Ok(model)
}

/// The request to route: sized and checked as chat, with the client's
/// own body beside it for an adapter that speaks Messages.
fn routed(read: Read, headers: Vec<(String, String)>) -> Result<(String, Inbound), ApiError> {
    let (model, mut inbound) = endpoints::chat_inbound(&read.chat)?;
    inbound.native = Some(NativeRequest {
        protocol: &passthrough::ANTHROPIC_MESSAGES,
        headers,
        body: read.body,
        stream: read.request.stream == Some(true),
    });
    Ok((model, inbound))
}

/// The client's `anthropic-*` headers (version, betas), for a provider
/// that speaks Messages; never its key.
fn protocol_headers(request: &Request<Incoming>) -> Vec<(String, String)> {
    request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("anthropic-"))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// The router's answer in Anthropic's shape.
async fn answer(response: Response<Body>, model: &str, estimate: u64) -> Response<Body> {
    if !response.status().is_success() {
        return errors::reshape(response).await;
    }
    if response.extensions().get::<Untranslated>().is_some() {
        return response;
    }
    if events::is_stream(&response) {
        return events::convert(response, reply::Events::new(model, estimate));
    }
    let (parts, body) = response.into_parts();
    let bytes = events::read(body).await;
    match serde_json::from_slice(&bytes) {
        Ok(completion) => events::with_json(parts, &reply::message(&completion)),
        Err(e) => errors::response(&ApiError::bad_gateway(
            "unreadable_answer",
            format!("the provider's answer could not be read: {e}"),
        )),
    }
}
