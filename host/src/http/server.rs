//! The HTTP front door: routes, client authentication, body limits, parsing.

use crate::api::{ApiError, Body, json_response};
use crate::gauge::{CONNECTIONS, IN_FLIGHT, Place};
use crate::http::endpoints;
use crate::http::inbound::{self, Inbound, Started};
use crate::http::{access, admin, admin_keys};
use crate::http::{dashboard, metrics};
use crate::http::{messages, responses};
use crate::route::Gateway;
use crate::route::record::{self, Answered, Record};
use crate::state::AppState;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Paths served, for a 405 (not a 404) when the method is wrong.
const PATHS: &[&str] = &[
    "/v1/models",
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/admin/quotas",
    "/admin/gpu",
    "/admin/plugins",
    "/admin/activity",
    "/admin/keys",
    "/metrics",
    "/",
];

/// A connection accepted, with its place on the connection gauge.
type Dealt = (StdTcpStream, Place);

/// Accepts connections until `shutdown` resolves and deals them to the
/// serving lanes in turn (see `lanes`); then lets open requests finish (for
/// up to 10 seconds). Each lane polls for `idle_poll` after its last work
/// before it sleeps (see [`crate::lanes::poll_idle`]). A connection over
/// `inbound`'s cap is answered 503 here and closed.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    idle_poll: Duration,
    inbound: Inbound,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let inbound = Arc::new(inbound);
    let mut lanes = Vec::new();
    let mut threads = Vec::new();
    for lane in 0..crate::lanes::count() {
        let (deal, dealt) = mpsc::unbounded_channel::<Dealt>();
        let state = state.clone();
        let inbound = inbound.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("tollgate-lane-{lane}"))
            .spawn(move || {
                crate::lanes::enter(lane, runtime.handle().clone());
                runtime.block_on(async {
                    tokio::select! {
                        _ = serve_lane(dealt, state, inbound) => {}
                        _ = crate::lanes::poll_idle(idle_poll) => {}
                    }
                });
            })?;
        lanes.push(deal);
        threads.push(thread);
    }
    tokio::pin!(shutdown);
    for next in (0..lanes.len()).cycle() {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(place) = CONNECTIONS.enter(inbound.max_connections) else {
            tokio::spawn(inbound::refuse(stream, inbound.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => {
                let _ = lanes[next].send((stream, place));
            }
            Err(e) => tracing::warn!("could not hand a connection to a lane: {e}"),
        }
    }
    tracing::info!("shutting down: waiting for open requests");
    // Closing the channels tells each lane to finish.
    drop(lanes);
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await?;
    Ok(())
}

/// Logs a failed `accept` and, when the failure is the process running out
/// of something (file descriptors: EMFILE), pauses before the next try, so
/// the loop neither spins nor floods the log while connections drain.
async fn accept_failed(error: &std::io::Error) {
    match inbound::accept_pause(error) {
        Some(pause) => {
            tracing::warn!("accept failed: {error}; pausing {pause:?}");
            tokio::time::sleep(pause).await;
        }
        None => tracing::debug!("accept failed: {error}"),
    }
}

/// Serves `GET /metrics` alone, without the master key, until `shutdown`
/// resolves: for a Prometheus on a private network while the main address
/// takes only clients with the key (`--metrics-listen`).
pub async fn run_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let state = state.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            async move {
                let response = match (request.method(), request.uri().path()) {
                    (&Method::GET, "/metrics") => metrics::metrics(&state).await,
                    (method, path) => {
                        ApiError::route_not_found(method.as_str(), path).into_response()
                    }
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("metrics connection ended: {e}");
            }
        });
    }
}

/// One lane's work, on its single-threaded runtime: serves the connections
/// dealt to it until the channel closes, then gives their open requests up
/// to 10 seconds. A connection that sends no request within the header
/// timeout is closed; hyper closes one that waits longer than the
/// keep-alive timeout for its next request's headers.
async fn serve_lane(
    mut dealt: mpsc::UnboundedReceiver<Dealt>,
    state: Arc<AppState>,
    inbound: Arc<Inbound>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(inbound.keep_alive.max(inbound.header_timeout));
    let graceful = GracefulShutdown::new();
    while let Some((stream, place)) = dealt.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("could not serve a connection: {e}");
                continue;
            }
        };
        let started = Started::default();
        let service = {
            let (state, inbound, started) = (state.clone(), inbound.clone(), started.clone());
            service_fn(move |request| {
                started.mark();
                let (state, inbound) = (state.clone(), inbound.clone());
                async move { Ok::<_, Infallible>(handle(&state, &inbound, request).await) }
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let header_timeout = inbound.header_timeout;
        tokio::spawn(async move {
            let _place = place;
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                },
                _ = inbound::first_request_deadline(started, header_timeout) => {
                    tracing::debug!("closed a connection that sent no request in {header_timeout:?}");
                }
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            lane = crate::lanes::current(),
            "open requests did not finish in 10 s; closing them"
        );
    }
}

/// Routes one request inside its record's scope (see [`Record`]), then
/// hands the record what the front door knows: its id, path and status.
async fn handle(state: &AppState, inbound: &Inbound, request: Request<Incoming>) -> Response<Body> {
    let in_flight = crate::lanes::request();
    // The place is the record's, given back when it is written (a stream's
    // at its end).
    let place = IN_FLIGHT.enter(inbound.max_in_flight);
    let shed = place.is_none();
    let record = Record::admitted(Instant::now(), place);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let routed = async {
        if path == "/health" {
            return json_response(StatusCode::OK, r#"{"status":"ok"}"#);
        }
        if shed {
            return shaped(
                path.starts_with("/v1/messages"),
                ApiError::overloaded(format!(
                    "the gateway is serving {} requests, its limit (TOLLGATE_MAX_IN_FLIGHT); retry shortly",
                    inbound.max_in_flight
                )),
            );
        }
        route(state, request, &method, &path).await
    };
    let mut response = record::scope(record.clone(), routed).await;
    drop(in_flight);
    if path != "/health" {
        answered(&record, &mut response, method, path);
    }
    response
}

/// Completes the request's record and gives the client its id. The record
/// is written when the answer's body is done with it.
fn answered(record: &Record, response: &mut Response<Body>, method: Method, path: String) {
    let id = request_id();
    response.headers_mut().insert(REQUEST_ID, id.clone());
    let counted = method == Method::POST && path.starts_with("/v1/");
    let quiet =
        method == Method::GET && (path == "/" || path == "/metrics" || path.starts_with("/admin/"));
    record.answered(Answered {
        id,
        method,
        path,
        status: response.status().as_u16(),
        counted,
        quiet,
    });
}

/// The response header that carries the id the request's log line has.
const REQUEST_ID: &str = "x-request-id";

/// A process-unique id: the process's start time, then a counter.
fn request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: LazyLock<u64> = LazyLock::new(|| {
        use crate::clock::Clock;
        crate::clock::SystemClock.now_ms() & 0xffff_ffff
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = format!("req_{:08x}{n:08x}", *START);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id)).expect("hex digits are a header value")
}

async fn route(
    state: &AppState,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
) -> Response<Body> {
    // The page holds no data: it asks /admin for it, with the key.
    if method == Method::GET && path == "/" {
        return dashboard::page();
    }
    let anthropic = path.starts_with("/v1/messages");
    let caller = match access::caller(state, request.headers(), path) {
        Ok(caller) => caller,
        Err(error) => return shaped(anthropic, error),
    };
    let generation = state.current();
    let allowlist = caller
        .key
        .as_ref()
        .filter(|key| !key.spec.models.is_empty())
        .cloned();
    Record::current().set_caller(caller);
    match (method, path) {
        (&Method::GET, "/v1/models") if request.headers().contains_key(ANTHROPIC_VERSION) => {
            json_response(StatusCode::OK, generation.models_anthropic.clone())
        }
        (&Method::GET, "/v1/models") => match allowlist {
            Some(key) => json_response(
                StatusCode::OK,
                crate::state::models_body_for(&generation.gateway, &|alias| key.spec.allows(alias)),
            ),
            None => json_response(StatusCode::OK, generation.models_json.clone()),
        },
        (&Method::GET, "/admin/keys") => admin_keys::list(state).await,
        (&Method::POST, "/admin/keys") => admin_keys::add(state, request).await,
        (&Method::DELETE, p) if p.starts_with("/admin/keys/") => {
            admin_keys::remove(state, &p["/admin/keys/".len()..])
        }
        (&Method::GET, "/admin/quotas") => admin::quotas(&generation.gateway).await,
        (&Method::GET, "/admin/gpu") => admin::gpu(&generation.gateway),
        (&Method::GET, "/admin/plugins") => admin::plugins(state, &generation),
        (&Method::GET, "/admin/activity") => admin::activity(),
        (&Method::GET, "/metrics") => metrics::metrics(state).await,
        (&Method::GET, "/v1/audio/voices") => {
            endpoints::voices(&generation.gateway, &request).await
        }
        (&Method::POST, _) => post(&generation.gateway, request, path).await,
        (_, p) if PATHS.contains(&p) => shaped(
            anthropic,
            ApiError::method_not_allowed(method.as_str(), path),
        ),
        _ => shaped(anthropic, ApiError::route_not_found(method.as_str(), path)),
    }
}

/// An error in the route's protocol: Anthropic's under `/v1/messages`,
/// OpenAI's elsewhere.
fn shaped(anthropic: bool, error: ApiError) -> Response<Body> {
    if anthropic {
        messages::errors::response(&error)
    } else {
        error.into_response()
    }
}

/// The OpenAI endpoints that take a `POST`.
async fn post(gateway: &Gateway, request: Request<Incoming>, path: &str) -> Response<Body> {
    match path {
        "/v1/chat/completions" => endpoints::chat(gateway, request).await,
        "/v1/messages" => messages::messages(gateway, request).await,
        "/v1/messages/count_tokens" => messages::count_tokens(request).await,
        "/v1/responses" => responses::responses(gateway, request).await,
        "/v1/embeddings" => endpoints::embeddings(gateway, request).await,
        "/v1/rerank" => endpoints::rerank(gateway, request).await,
        "/v1/audio/transcriptions" => endpoints::transcriptions(gateway, request).await,
        "/v1/audio/speech" => endpoints::speech(gateway, request).await,
        "/v1/images/generations" => endpoints::images(gateway, request).await,
        p if PATHS.contains(&p) => ApiError::method_not_allowed("POST", p).into_response(),
        p => shaped(
            p.starts_with("/v1/messages"),
            ApiError::route_not_found("POST", p),
        ),
    }
}

/// The header every Anthropic client sends; its value is accepted as it is.
const ANTHROPIC_VERSION: &str = "anthropic-version";
