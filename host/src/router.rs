//! Routing one request across its candidates.
//!
//! Candidates are the requested alias then its fallback chain, enabled ones
//! only. Each attempt runs in a fresh plugin instance: the adapter builds the
//! upstream request, the host sends it, the adapter translates the answer or
//! classifies the failure. A failure the next provider would repeat (a bad
//! request) goes straight back to the client; every other failure (429, 5xx,
//! auth, connection error, timeout, plugin fault) moves on to the next
//! candidate. A stream is committed to its provider once the first client
//! chunk is ready; a failure after that ends the stream with an error event.
//!
//! Before each attempt the ledger reserves the candidate's quota; a
//! candidate without room, or cooling down after a 429, is skipped without a
//! network call, and the reason goes into the error a client sees if every
//! candidate fails. The reservation is settled with the real usage and the
//! provider's rate-limit headers when the attempt ends, however it ends.

use crate::api::{ApiError, Body, json_response};
use crate::config::{Catalog, Feature, Model};
use crate::gpu::{Granted, Leases, Refusal};
use crate::ledger::estimate::Estimate;
use crate::ledger::headers::RateHeaders;
use crate::ledger::plan::Plan;
use crate::ledger::{Denial, Ledger, Outcome, Reservation};
use crate::plugins::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use crate::plugins::bindings::{
    self, ClientRequest, FailureKind, ResponseKind, Target, UpstreamResponse,
};
use crate::plugins::{LoadedPlugin, PluginRuntime, Session};
use crate::redact::Redactor;
use crate::relay::{BinaryRelay, Committed, Relay};
use crate::uploads::Uploads;
use crate::upstream::{self, UpstreamError, Upstreams};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;

/// Response header naming the alias that served the request.
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Response header counting the attempts made, the serving one included.
pub const ATTEMPTS_HEADER: &str = "x-tollgate-attempts";
/// Response header listing candidates skipped for quota (`alias:window`).
pub const SKIPPED_HEADER: &str = "x-tollgate-skipped";
/// Times one attempt goes back to wait for a job slot after its local
/// backend answered busy.
const BUSY_RETRIES: u32 = 3;

/// Everything a request needs, shared by all requests.
pub struct Gateway {
    pub catalog: Catalog,
    pub plugins: PluginRuntime,
    pub ledger: Arc<Ledger>,
    /// The GPU lease table and local backends' job slots.
    pub leases: Arc<Leases>,
    /// The ledger plan of every enabled alias.
    plans: HashMap<String, Arc<Plan>>,
    pub(crate) upstreams: Upstreams,
    pub(crate) redactor: Redactor,
}

/// A client request, parsed and sized, ready to route.
pub struct Inbound {
    pub request: ClientRequest,
    pub estimate: Estimate,
    /// The fields it carries that some providers refuse.
    pub features: Vec<Feature>,
    /// Files of a multipart request, spooled to disk.
    pub uploads: Uploads,
}

impl Inbound {
    /// A JSON request with no refusable fields and no files.
    pub fn json(request: ClientRequest, estimate: Estimate) -> Self {
        Inbound {
            request,
            estimate,
            features: Vec::new(),
            uploads: Uploads::default(),
        }
    }
}

/// What became of one candidate that did not serve the request.
struct Note {
    model: Arc<Model>,
    reason: String,
    kind: FailureKind,
    /// Skipped by the ledger, no request sent: the window that was full,
    /// or `cooldown` (for the `x-tollgate-skipped` header).
    skipped: Option<&'static str>,
    /// When it may have room again (ms), if known.
    retry_at: Option<u64>,
}

impl Note {
    fn skipped(model: &Arc<Model>, denial: &Denial) -> Self {
        Note {
            model: model.clone(),
            reason: denial.to_string(),
            kind: FailureKind::RateLimited,
            skipped: Some(match denial {
                Denial::Full { window, .. } => window,
                Denial::Cooling { .. } => "cooldown",
            }),
            retry_at: denial.retry_at(),
        }
    }

    /// Skipped because the request carries a field the model refuses.
    fn refused(model: &Arc<Model>, feature: Feature) -> Self {
        Note {
            model: model.clone(),
            reason: format!("does not accept `{}`", feature.as_str()),
            kind: FailureKind::BadRequest,
            skipped: Some(feature.as_str()),
            retry_at: None,
        }
    }

    /// Skipped because its local backend had no room or slot in time.
    fn busy(model: &Arc<Model>, refusal: &Refusal) -> Self {
        Note {
            model: model.clone(),
            reason: format!("local backend busy: {refusal}"),
            kind: FailureKind::Unavailable,
            skipped: Some("gpu"),
            retry_at: None,
        }
    }

    fn failed(model: &Arc<Model>, reason: String, kind: FailureKind) -> Self {
        Note {
            model: model.clone(),
            reason,
            kind,
            skipped: None,
            retry_at: None,
        }
    }
}

/// The policy routing a request with more than one candidate, and what it
/// is told of the request.
struct Routing<'a> {
    policy: &'a Arc<LoadedPlugin>,
    shape: RequestShape,
}

/// The ledger's side of one attempt, settled exactly once however the
/// attempt ends (a stream carries it to its last chunk).
pub(crate) struct Hold {
    reservation: Option<Reservation>,
    headers: RateHeaders,
    /// Whether the request reached the provider (it then counts).
    sent: bool,
    /// The provider's HTTP status, once it answered.
    status: Option<u16>,
    /// The local backend's job slot and GPU lease, given back when the
    /// attempt (or its stream) ends.
    local: Option<Granted>,
}

impl Hold {
    pub(crate) async fn settle(&mut self, outcome: Outcome) {
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(outcome, &self.headers).await;
        }
    }

    /// Moves the hold into a body that outlives the attempt (a stream).
    fn take(&mut self) -> Hold {
        Hold {
            reservation: self.reservation.take(),
            headers: std::mem::take(&mut self.headers),
            sent: true,
            status: self.status,
            local: self.local.take(),
        }
    }

    /// Reads the provider's rate-limit headers off a response.
    fn read_headers(&mut self, response: &reqwest::Response, now: u64) {
        self.sent = true;
        self.status = Some(response.status().as_u16());
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        self.headers = RateHeaders::parse(headers, now);
    }
}

/// Why one attempt did not serve the request.
enum Failed {
    /// The client's own fault: answer with this and stop.
    Final(ApiError),
    /// Note it and try the next candidate.
    Next { reason: String, kind: FailureKind },
}

impl Failed {
    fn next(kind: FailureKind, reason: impl ToString) -> Self {
        Failed::Next {
            reason: reason.to_string(),
            kind,
        }
    }
}

impl From<crate::plugins::PluginError> for Failed {
    fn from(e: crate::plugins::PluginError) -> Self {
        Failed::next(FailureKind::Other, e)
    }
}

impl From<UpstreamError> for Failed {
    fn from(e: UpstreamError) -> Self {
        let kind = match e {
            UpstreamError::Connect(_) | UpstreamError::ResponseTimeout(_) => {
                FailureKind::Unavailable
            }
            _ => FailureKind::Other,
        };
        Failed::next(kind, e)
    }
}

impl Gateway {
    pub fn new(
        catalog: Catalog,
        plugins: PluginRuntime,
        ledger: Arc<Ledger>,
        leases: Arc<Leases>,
    ) -> anyhow::Result<Self> {
        let upstreams = Upstreams::new(&catalog.providers)?;
        let redactor = Redactor::new(catalog.secrets());
        let plans = catalog
            .models
            .iter()
            .filter(|m| m.enabled())
            .map(|m| (m.alias.clone(), ledger.plan(m)))
            .collect();
        Ok(Gateway {
            catalog,
            plugins,
            ledger,
            leases,
            plans,
            upstreams,
            redactor,
        })
    }

    /// Serves `inbound` for `alias` from the first candidate that can.
    pub async fn serve(&self, alias: &str, inbound: &Inbound) -> Response<Body> {
        let Inbound {
            request, estimate, ..
        } = inbound;
        let candidates = self.catalog.candidates(alias);
        let Some(head) = candidates.first() else {
            return ApiError::model_not_found(alias).into_response();
        };
        let mode = wit_mode(head.mode);
        if mode != request.mode {
            return ApiError::bad_request(format!(
                "the model `{alias}` serves {}, not this endpoint",
                head.mode.as_str()
            ))
            .into_response();
        }
        // A single candidate has nothing to order: no policy call, no shape.
        let routing = self
            .policy_for(alias)
            .filter(|_| candidates.len() > 1)
            .map(|policy| Routing {
                policy,
                shape: crate::policy::request_shape(alias, mode, estimate, request.stream),
            });
        let candidates = self.order(routing.as_ref(), candidates).await;
        let mut notes: Vec<Note> = Vec::new();
        for (index, model) in candidates.iter().enumerate() {
            let Some(plan) = self.plans.get(&model.alias) else {
                continue;
            };
            let (result, status) = match self.try_candidate(model, plan, inbound).await {
                Ok(tried) => tried,
                Err(note) => {
                    notes.push(note);
                    continue;
                }
            };
            match result {
                Ok(response) => return with_route(response, &model.alias, &notes),
                Err(Failed::Final(error)) => {
                    return with_route(error.into_response(), &model.alias, &notes);
                }
                Err(Failed::Next { reason, kind }) => {
                    let reason = self.redactor.scrub(&reason);
                    tracing::warn!(alias = %model.alias, provider = %model.provider.name, "attempt failed: {reason}");
                    notes.push(Note::failed(model, reason, kind));
                    let left = (candidates.len() - index - 1) as u32;
                    if left > 0
                        && !self
                            .go_on(routing.as_ref(), model, kind, status, left)
                            .await
                    {
                        break;
                    }
                }
            }
        }
        self.exhausted(alias, notes)
    }

    /// Attempts `model`, settling a failed attempt's quota: the result and
    /// the provider's status, or why it was skipped. A local backend that
    /// answers busy while other jobs of ours run on it has learned its limit
    /// ([`crate::gpu::jobs`]); the attempt then waits for a slot and is sent
    /// again, as often as [`BUSY_RETRIES`].
    async fn try_candidate(
        &self,
        model: &Arc<Model>,
        plan: &Arc<Plan>,
        inbound: &Inbound,
    ) -> Result<(Result<Response<Body>, Failed>, Option<u16>), Note> {
        let mut busy = 0;
        loop {
            let mut hold = self.prepare(model, plan, inbound).await?;
            let started = std::time::Instant::now();
            let result = self.attempt(model, inbound, &mut hold).await;
            if hold.sent || result.is_ok() {
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                plan.model.health.record(result.is_ok(), Some(latency));
            } else {
                plan.model.health.record(false, None);
            }
            if let Err(failed) = &result {
                hold.settle(outcome_of(failed, hold.sent)).await;
                if busy < BUSY_RETRIES && self.busy(model, &hold) {
                    busy += 1;
                    tracing::info!(alias = %model.alias, "the backend was busy; waiting for a job slot");
                    continue;
                }
            }
            return Ok((result, hold.status));
        }
    }

    /// Whether a failed attempt was a local backend refusing a job for the
    /// others it runs (503 while this attempt still holds its slot).
    fn busy(&self, model: &Model, hold: &Hold) -> bool {
        hold.status == Some(503)
            && hold.local.is_some()
            && self.leases.learn_busy(&model.provider.name)
    }

    /// What must hold before an attempt on `model`: it accepts the request's
    /// fields, the ledger has room for it, and its local backend (if any)
    /// has a job slot and memory. Otherwise, why it is skipped.
    async fn prepare(
        &self,
        model: &Arc<Model>,
        plan: &Arc<Plan>,
        inbound: &Inbound,
    ) -> Result<Hold, Note> {
        if let Some(feature) = refused(model, &inbound.features) {
            return Err(Note::refused(model, feature));
        }
        let reservation = match self.ledger.reserve(plan, &inbound.estimate).await {
            Ok(reservation) => reservation,
            Err(denial) => {
                tracing::debug!(alias = %model.alias, "{denial}");
                return Err(Note::skipped(model, &denial));
            }
        };
        let mut hold = Hold {
            reservation: Some(reservation),
            headers: RateHeaders::default(),
            sent: false,
            status: None,
            local: None,
        };
        if let Err(note) = self.take_local(model, &mut hold).await {
            hold.settle(Outcome::NotSent).await;
            tracing::warn!(alias = %model.alias, "{}", note.reason);
            return Err(note);
        }
        Ok(hold)
    }

    /// Holds `model`'s local backend for the attempt (a job slot, a GPU
    /// lease) and has it load the model when it is not resident.
    async fn take_local(&self, model: &Arc<Model>, hold: &mut Hold) -> Result<(), Note> {
        let granted = match self.hold_local(model).await {
            Ok(granted) => granted,
            Err(refusal) => return Err(Note::busy(model, &refusal)),
        };
        if let Some(granted) = &granted
            && granted.load
            && let Err(e) = self.load(model, granted).await
        {
            let reason = self
                .redactor
                .scrub(&format!("could not load the model: {e}"));
            return Err(Note::failed(model, reason, FailureKind::Unavailable));
        }
        hold.local = granted;
        Ok(())
    }

    /// The routing policy `policies.yaml` names for `alias`.
    fn policy_for(&self, alias: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.policy(self.catalog.policies.for_alias(alias))
    }

    /// The candidates in the policy's order. A policy that fails (a trap, a
    /// deadline) leaves the chain's order, with a warning.
    async fn order(
        &self,
        routing: Option<&Routing<'_>>,
        candidates: Vec<Arc<Model>>,
    ) -> Vec<Arc<Model>> {
        let Some(Routing { policy, shape }) = routing else {
            return candidates;
        };
        let seen: Vec<Candidate> = candidates
            .iter()
            .filter_map(|m| {
                let plan = self.plans.get(&m.alias)?;
                Some(crate::policy::candidate(
                    m,
                    plan,
                    &self.ledger,
                    &self.leases,
                ))
            })
            .collect();
        if seen.len() != candidates.len() {
            return candidates;
        }
        match self.plugins.order(policy, shape, &seen).await {
            Ok(order) => crate::policy::apply(&order, &candidates),
            Err(e) => {
                tracing::warn!(policy = %policy.name, "the routing policy failed; using the chain's order: {e}");
                candidates
            }
        }
    }

    /// Asks the policy whether to try the next candidate (after waiting, if
    /// it says so). A policy that fails means go on.
    async fn go_on(
        &self,
        routing: Option<&Routing<'_>>,
        model: &Model,
        kind: FailureKind,
        status: Option<u16>,
        left: u32,
    ) -> bool {
        let Some(Routing { policy, shape }) = routing else {
            return true;
        };
        let failed = FailedAttempt {
            alias: model.alias.clone(),
            kind,
            status,
        };
        match self
            .plugins
            .after_failure(policy, shape, &failed, left)
            .await
        {
            Ok(NextStep::GoOn) => true,
            Ok(NextStep::Wait(ms)) => {
                let ms = ms.min(crate::policy::MAX_WAIT_MS);
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(ms))).await;
                true
            }
            Ok(NextStep::Stop) => false,
            Err(e) => {
                tracing::warn!(policy = %policy.name, "the routing policy failed after an attempt; going on: {e}");
                true
            }
        }
    }

    /// The answer when no candidate served: 429 when every one was rate
    /// limited or out of quota (with `retry-after` when the ledger knows),
    /// else 502; the message lists what happened to each.
    fn exhausted(&self, alias: &str, notes: Vec<Note>) -> Response<Body> {
        let attempts = notes.iter().filter(|n| n.skipped.is_none()).count();
        let retry_at = notes.iter().filter_map(|n| n.retry_at).min();
        let mut response = exhausted(alias, &notes).into_response();
        set_header(&mut response, ATTEMPTS_HEADER, &attempts.to_string());
        set_skipped(&mut response, &notes);
        if response.status() == StatusCode::TOO_MANY_REQUESTS
            && let Some(at) = retry_at
        {
            let seconds = at.saturating_sub(self.ledger.now()).div_ceil(1000).max(1);
            set_header(&mut response, "retry-after", &seconds.to_string());
        }
        response
    }

    async fn attempt(
        &self,
        model: &Model,
        inbound: &Inbound,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let request = &inbound.request;
        let adapter = self
            .plugins
            .adapter(&model.provider.adapter)
            .ok_or_else(|| {
                Failed::next(
                    FailureKind::Other,
                    format!("adapter `{}` is not loaded", model.provider.adapter),
                )
            })?;
        let target = target_of(model);
        let mut session = self.plugins.session(adapter).await?;
        let upstream_request = match session.build_request(&target, request).await? {
            Ok(built) => built,
            Err(message) => {
                return Err(Failed::Final(ApiError::bad_request(
                    self.redactor.scrub(&message),
                )));
            }
        };
        let kind = upstream_request.response;
        let sent = self
            .upstreams
            .send(&model.provider, upstream_request, &inbound.uploads)
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                // Past the connect, the provider may have seen the request.
                hold.sent = !matches!(e, UpstreamError::Connect(_) | UpstreamError::Invalid(_));
                return Err(e.into());
            }
        };
        hold.read_headers(&response, self.ledger.now());
        if !response.status().is_success() {
            return Err(self.failure(model, session, &target, response).await);
        }
        match kind {
            ResponseKind::EventStream => {
                self.stream(model, session, &target, request, response, hold)
                    .await
            }
            ResponseKind::Json => {
                self.whole(model, session, &target, request, response, hold)
                    .await
            }
            ResponseKind::Binary => Ok(self.binary(model, response, hold)),
        }
    }

    /// Hands a binary body (speech audio) to the client as it arrives.
    fn binary(
        &self,
        model: &Model,
        response: reqwest::Response,
        hold: &mut Hold,
    ) -> Response<Body> {
        BinaryRelay {
            response,
            idle: model.provider.timeouts.idle(),
            alias: model.alias.clone(),
            redactor: self.redactor.clone(),
            hold: hold.take(),
        }
        .into_response()
    }

    /// Reads a failed response and asks the adapter what it means.
    async fn failure(
        &self,
        model: &Model,
        mut session: Session,
        target: &Target,
        mut response: reqwest::Response,
    ) -> Failed {
        let status = response.status().as_u16();
        let headers = upstream::headers_of(&response);
        let body = upstream::read_body(&mut response, model.provider.timeouts.idle())
            .await
            .unwrap_or_default();
        let upstream = UpstreamResponse {
            status,
            headers,
            body,
        };
        let failure = match session.classify_failure(target, &upstream).await {
            Ok(failure) => failure,
            Err(e) => return Failed::next(FailureKind::Other, format!("HTTP {status}; {e}")),
        };
        let message = self.redactor.scrub(&failure.message);
        if failure.kind == FailureKind::BadRequest {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Failed::Final(ApiError::new(
                status,
                "invalid_request_error",
                "upstream_rejected_request",
                message,
            ));
        }
        let retry = failure
            .retry_after_ms
            .map(|ms| format!(", retry after {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        Failed::next(
            failure.kind,
            format!(
                "{} (HTTP {status}{retry}): {message}",
                kind_name(failure.kind)
            ),
        )
    }

    async fn whole(
        &self,
        model: &Model,
        mut session: Session,
        target: &Target,
        request: &ClientRequest,
        mut response: reqwest::Response,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let status = response.status().as_u16();
        let headers = upstream::headers_of(&response);
        let body = upstream::read_body(&mut response, model.provider.timeouts.idle()).await?;
        let upstream = UpstreamResponse {
            status,
            headers,
            body,
        };
        let reply = session
            .translate_response(target, request, &upstream)
            .await?
            .map_err(|e| {
                Failed::next(
                    FailureKind::Other,
                    format!("the adapter could not translate the answer: {e}"),
                )
            })?;
        log_usage(model, reply.usage);
        hold.settle(Outcome::Served {
            usage: reply.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        })
        .await;
        let mut out = json_response(StatusCode::OK, reply.body);
        set_header(&mut out, CONTENT_TYPE.as_str(), &reply.content_type);
        Ok(out)
    }

    /// Reads until the first client chunk is ready (falling back on any
    /// failure so far), then hands the rest of the stream to a pump task.
    async fn stream(
        &self,
        model: &Model,
        session: Session,
        target: &Target,
        request: &ClientRequest,
        mut response: reqwest::Response,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let idle = model.provider.timeouts.idle();
        let mut translator = session.open_stream(target, request).await?;
        let mut first = Vec::new();
        let mut usage = None;
        let (done, ended) = loop {
            let (output, ended) = match upstream::next_chunk(&mut response, idle).await? {
                Some(bytes) => (translator.push(&bytes).await?, false),
                None => (translator.finish().await?, true),
            };
            let output = output.map_err(|e| {
                Failed::next(
                    FailureKind::Other,
                    format!("the adapter rejected the stream: {e}"),
                )
            })?;
            usage = output.usage.or(usage);
            first.extend(output.chunks);
            if ended || output.done || !first.is_empty() {
                break (ended || output.done, ended);
            }
        };
        if first.is_empty() {
            return Err(Failed::next(
                FailureKind::Server,
                "the upstream closed the stream without sending anything",
            ));
        }
        let relay = Relay::new(Committed {
            translator,
            response,
            idle,
            usage,
            alias: model.alias.clone(),
            redactor: self.redactor.clone(),
            hold: hold.take(),
            first,
            done,
            upstream_ended: ended,
        });
        Ok(relay.into_response())
    }
}

/// The first field of the request that `model` refuses.
fn refused(model: &Model, features: &[Feature]) -> Option<Feature> {
    features
        .iter()
        .copied()
        .find(|f| model.unsupported.contains(f))
}

/// How a failed attempt counts in the ledger.
fn outcome_of(failed: &Failed, sent: bool) -> Outcome {
    match failed {
        _ if !sent => Outcome::NotSent,
        Failed::Next {
            kind: FailureKind::RateLimited,
            ..
        } => Outcome::RateLimited,
        Failed::Next {
            kind: FailureKind::QuotaExhausted,
            ..
        } => Outcome::QuotaExhausted,
        _ => Outcome::Failed,
    }
}

fn exhausted(alias: &str, notes: &[Note]) -> ApiError {
    // Candidates that refuse a field of the request say nothing of the
    // others' limits: the answer is 400 only when every candidate refused.
    let refused = |n: &&Note| n.kind == FailureKind::BadRequest && n.skipped.is_some();
    let tried: Vec<&Note> = notes.iter().filter(|n| !refused(n)).collect();
    let all_refused = !notes.is_empty() && tried.is_empty();
    let all_limited = !tried.is_empty()
        && tried.iter().all(|n| {
            matches!(
                n.kind,
                FailureKind::RateLimited | FailureKind::QuotaExhausted
            )
        });
    let detail: Vec<String> = notes
        .iter()
        .enumerate()
        .map(|(i, note)| {
            format!(
                "{}. {} ({}): {}",
                i + 1,
                note.model.alias,
                note.model.provider.name,
                note.reason
            )
        })
        .collect();
    let message = format!(
        "every candidate for `{alias}` failed: {}",
        detail.join("; ")
    );
    if all_refused {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_by_every_candidate",
            format!(
                "no candidate for `{alias}` accepts this request: {}",
                detail.join("; ")
            ),
        )
    } else if all_limited {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            message,
        )
    } else {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "all_candidates_failed",
            message,
        )
    }
}

fn kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RateLimited => "rate limited",
        FailureKind::QuotaExhausted => "quota exhausted",
        FailureKind::Auth => "authentication failed",
        FailureKind::BadRequest => "bad request",
        FailureKind::NotFound => "not found",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Server => "server error",
        FailureKind::Other => "failed",
    }
}

fn with_route(mut response: Response<Body>, alias: &str, notes: &[Note]) -> Response<Body> {
    let attempts = notes.iter().filter(|n| n.skipped.is_none()).count() + 1;
    set_header(&mut response, PROVIDER_HEADER, alias);
    set_header(&mut response, ATTEMPTS_HEADER, &attempts.to_string());
    set_skipped(&mut response, notes);
    response
}

fn set_skipped(response: &mut Response<Body>, notes: &[Note]) {
    let skipped: Vec<String> = notes
        .iter()
        .filter_map(|n| n.skipped.map(|tag| format!("{}:{tag}", n.model.alias)))
        .collect();
    if !skipped.is_empty() {
        set_header(response, SKIPPED_HEADER, &skipped.join(", "));
    }
}

fn set_header(response: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        hyper::header::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

fn log_usage(model: &Model, usage: Option<bindings::Usage>) {
    if let Some(usage) = usage {
        tracing::debug!(alias = %model.alias, prompt = usage.prompt_tokens, completion = usage.completion_tokens, "usage");
    }
}

pub fn wit_mode(mode: crate::config::Mode) -> bindings::Mode {
    use crate::config::Mode as M;
    match mode {
        M::Chat => bindings::Mode::Chat,
        M::Embedding => bindings::Mode::Embedding,
        M::Rerank => bindings::Mode::Rerank,
        M::Transcription => bindings::Mode::Transcription,
        M::Speech => bindings::Mode::Speech,
        M::Image => bindings::Mode::Image,
    }
}

pub(crate) fn target_of(model: &Model) -> Target {
    Target {
        provider: model.provider.name.clone(),
        alias: model.alias.clone(),
        model: model.model.clone(),
        base_url: model.provider.base_url.clone(),
        mode: wit_mode(model.mode),
        options: model.provider.options.clone(),
    }
}
