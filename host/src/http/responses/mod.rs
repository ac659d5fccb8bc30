//! OpenAI's Responses API, inbound and stateless: `POST /v1/responses`, for
//! Codex-style agents and the newest OpenAI SDK examples.
//!
//! The request becomes the chat request the router serves ([`request`]);
//! the answer becomes a `response` object or the Responses event stream
//! ([`reply`]). Errors keep OpenAI's shape, as on every OpenAI route.

mod reply;
mod request;

use crate::api::{ApiError, Body};
use crate::http::endpoints;
use crate::http::events;
use crate::route::Gateway;
use hyper::body::Incoming;
use hyper::{Request, Response};
use request::ResponsesRequest;

/// `POST /v1/responses`.
pub async fn responses(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    match read(request).await {
        Ok((parsed, model, inbound)) => {
            let response = gateway.serve(&model, &inbound).await;
            answer(response, reply::Echo::of(&parsed)).await
        }
        Err(error) => error.into_response(),
    }
}

/// Reads, checks and translates the body.
async fn read(
    request: Request<Incoming>,
) -> Result<(ResponsesRequest, String, crate::route::Inbound), ApiError> {
    let body = endpoints::read_body(request).await?;
    parse(&body)
}

/// Checks and translates a Responses body: the request, the model it
/// names and the chat request to route.
pub fn parse(body: &[u8]) -> Result<(ResponsesRequest, String, crate::route::Inbound), ApiError> {
    let parsed: ResponsesRequest = serde_json::from_slice(body)
        .map_err(|e| crate::http::validate::field_error::<ResponsesRequest>(body, e))?;
    let chat = serde_json::to_vec(&parsed.to_chat()?)
        .map_err(|e| ApiError::bad_request(format!("could not translate the request: {e}")))?;
    let (model, inbound) = endpoints::chat_inbound(&chat)?;
    Ok((parsed, model, inbound))
}

async fn answer(response: Response<Body>, echo: reply::Echo) -> Response<Body> {
    if !response.status().is_success() {
        return response;
    }
    if events::is_stream(&response) {
        return events::convert(response, reply::Events::new(echo));
    }
    let (parts, body) = response.into_parts();
    let bytes = events::read(body).await;
    match serde_json::from_slice(&bytes) {
        Ok(completion) => events::with_json(parts, &reply::response(&completion, &echo)),
        Err(e) => ApiError::bad_gateway(
            "unreadable_answer",
            format!("the provider's answer could not be read: {e}"),
        )
        .into_response(),
    }
}
