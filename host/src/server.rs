//! The HTTP front door: routes, client authentication, body limits, parsing.

use crate::admin;
use crate::api::{ApiError, Body, json_response};
use crate::config::Secret;
use crate::ledger::estimate::{Estimate, Messages, TextSize};
use crate::plugins::bindings::{ClientRequest, Mode};
use crate::reload::ReloadStatus;
use crate::router::Gateway;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request body accepted (chat requests may carry inline images).
pub const MAX_REQUEST_BODY: usize = 32 << 20;

/// Endpoints of the OpenAI API that later versions serve; until then they
/// answer 501 rather than a misleading 404.
const NOT_YET_SERVED: &[&str] = &[
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/images/generations",
];

/// One generation of catalogue and plugins. A request takes the current
/// one when it starts and keeps it to the end, so a reload never changes
/// the ground under a request in flight.
pub struct Generation {
    pub gateway: Gateway,
    models_json: Bytes,
}

impl Generation {
    fn new(gateway: Gateway) -> Self {
        let models_json = models_body(&gateway);
        Generation {
            gateway,
            models_json,
        }
    }
}

pub struct AppState {
    current: ArcSwap<Generation>,
    pub master_key: Option<Secret>,
    /// What the last reloads found wrong, for `/admin/plugins`.
    pub reloads: Mutex<ReloadStatus>,
}

impl AppState {
    pub fn new(gateway: Gateway, master_key: Option<Secret>) -> Self {
        let reloads = ReloadStatus::started(&gateway);
        AppState {
            current: ArcSwap::from_pointee(Generation::new(gateway)),
            master_key,
            reloads: Mutex::new(reloads),
        }
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Puts a new generation in service; requests in flight finish on theirs.
    pub fn install(&self, gateway: Gateway) {
        self.current.store(Arc::new(Generation::new(gateway)));
    }
}

/// Accepts connections until `shutdown` resolves, then lets open requests
/// finish (for up to 10 seconds).
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    tracing::info!("shutting down: waiting for open requests");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish in 10 s; closing them");
    }
    Ok(())
}

/// Routes one request and writes its access-log line.
async fn handle(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = route(state, request, &method, &path).await;
    if path != "/health" {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        tracing::info!(
            target: "tollgate::access",
            %method,
            %path,
            status = response.status().as_u16(),
            served_by = %header(crate::router::PROVIDER_HEADER),
            attempts = %header(crate::router::ATTEMPTS_HEADER),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    response
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
) -> Response<Body> {
    if path == "/health" {
        return json_response(StatusCode::OK, r#"{"status":"ok"}"#);
    }
    if !authorized(state, &request) {
        return ApiError::unauthorized().into_response();
    }
    let generation = state.current();
    match (method, path) {
        (&Method::GET, "/v1/models") => {
            json_response(StatusCode::OK, generation.models_json.clone())
        }
        (&Method::GET, "/admin/quotas") => admin::quotas(&generation.gateway).await,
        (&Method::GET, "/admin/plugins") => admin::plugins(state, &generation),
        (&Method::POST, "/v1/chat/completions") => chat(&generation.gateway, request).await,
        (_, "/v1/models" | "/v1/chat/completions" | "/admin/quotas" | "/admin/plugins") => {
            ApiError::method_not_allowed(method.as_str(), path).into_response()
        }
        (_, p) if NOT_YET_SERVED.contains(&p) => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request_error",
            "not_implemented",
            format!("{p} is not served by this version of Tollgate yet"),
        )
        .into_response(),
        _ => ApiError::route_not_found(method.as_str(), path).into_response(),
    }
}

/// True when no master key is set, or the bearer token equals it.
fn authorized(state: &AppState, request: &Request<Incoming>) -> bool {
    let Some(key) = &state.master_key else {
        return true;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), key.expose().as_bytes())
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The fields the gateway itself needs; the rest stays in the raw body.
/// The messages and tools are sized as they are parsed, for the ledger's
/// token estimate.
#[derive(Deserialize)]
struct ChatEnvelope {
    model: String,
    #[serde(default)]
    stream: Option<bool>,
    messages: Messages,
    #[serde(default)]
    tools: Option<TextSize>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// Choices to generate; each spends its own completion tokens.
    #[serde(default)]
    n: Option<u64>,
}

impl ChatEnvelope {
    fn estimate(&self) -> Estimate {
        let cap = self.max_completion_tokens.or(self.max_tokens);
        let choices = self.n.unwrap_or(1).max(1);
        Estimate::new(
            self.messages.0,
            self.tools,
            cap.map(|c| c.saturating_mul(choices)),
        )
    }
}

async fn chat(gateway: &Gateway, request: Request<Incoming>) -> Response<Body> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let envelope: ChatEnvelope = match serde_json::from_slice(&body) {
        Ok(envelope) => envelope,
        Err(e) => return body_error(e).into_response(),
    };
    // serde_json accepted it, so it is valid UTF-8.
    let text = String::from_utf8(body.to_vec()).unwrap_or_default();
    let request = ClientRequest {
        mode: Mode::Chat,
        body: text,
        stream: envelope.stream.unwrap_or(false),
        uploads: Vec::new(),
    };
    let estimate = envelope.estimate();
    gateway.serve(&envelope.model, request, estimate).await
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large(MAX_REQUEST_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

fn body_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        }
        Category::Data => ApiError::bad_request(format!("invalid request body: {e}")),
    }
}

fn models_body(gateway: &Gateway) -> Bytes {
    let data: Vec<serde_json::Value> = gateway
        .catalog
        .models
        .iter()
        .filter(|m| m.enabled())
        .map(|m| {
            serde_json::json!({
                "id": m.alias,
                "object": "model",
                "created": 0,
                "owned_by": m.provider.name,
                "mode": m.mode.as_str(),
                "tier": m.tier.as_str(),
            })
        })
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret-key", b"secret-key"));
        assert!(!constant_time_eq(b"secret-kez", b"secret-key"));
        assert!(!constant_time_eq(b"secret", b"secret-key"));
        assert!(!constant_time_eq(b"", b"secret-key"));
    }
}
