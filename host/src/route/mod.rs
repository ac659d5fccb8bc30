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

mod attempt;
mod guard;
mod hold;
mod local;
pub mod native;
mod notes;
pub mod policy;
pub mod record;
mod relay;
pub mod table;
mod voices;

pub use attempt::{target_of, wit_mode};
pub use notes::{ATTEMPTS_HEADER, PROVIDER_HEADER, ROUTE_HEADER, SKIPPED_HEADER};

use crate::api::uploads::Uploads;
use crate::api::{ApiError, Body};
use crate::config::{Catalog, Feature, Model};
use crate::gpu::Leases;
use crate::keys::Caller;
use crate::ledger::estimate::Estimate;
use crate::ledger::{Ledger, Outcome};
use crate::plugins::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use crate::plugins::bindings::{ClientRequest, FailureKind};
use crate::plugins::{LoadedPlugin, PluginRuntime};
use crate::redact::Redactor;
use crate::upstream::Upstreams;
use attempt::refused;
use hold::{Failed, Hold, outcome_of};
use hyper::Response;
use notes::{Note, exhausted, with_route};
use record::Record;
use std::sync::Arc;
use table::{Hop, Route, Routes};

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
    /// Every enabled alias's candidates, plans, adapters and policy.
    routes: Routes,
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
    /// The request as the client sent it, when it came in another protocol
    /// than OpenAI's (for an adapter that takes that protocol as it is).
    pub native: Option<native::NativeRequest>,
}

impl Inbound {
    /// A JSON request with no refusable fields and no files.
    pub fn json(request: ClientRequest, estimate: Estimate) -> Self {
        Inbound {
            request,
            estimate,
            features: Vec::new(),
            uploads: Uploads::default(),
            native: None,
        }
    }
}

/// The policy routing a request with more than one candidate, and what it
/// is told of the request.
struct Routing<'a> {
    policy: &'a Arc<LoadedPlugin>,
    shape: RequestShape,
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
        plugins.use_secrets(redactor.clone());
        let routes = Routes::build(&catalog, &plugins, &ledger);
        Ok(Gateway {
            catalog,
            plugins,
            ledger,
            leases,
            routes,
            upstreams,
            redactor,
        })
    }

    /// Serves `inbound` for `alias` from the first candidate that can,
    /// noting what happened in the request's [`Record`].
    pub async fn serve(&self, alias: &str, inbound: &Inbound) -> Response<Body> {
        let record = Record::current();
        self.serve_recorded(alias, inbound, &record).await
    }

    async fn serve_recorded(
        &self,
        alias: &str,
        inbound: &Inbound,
        record: &Arc<Record>,
    ) -> Response<Body> {
        let Some(route) = self.routes.get(alias) else {
            return ApiError::model_not_found(alias).into_response();
        };
        if wit_mode(route.mode) != inbound.request.mode {
            return ApiError::bad_request(format!(
                "the model `{alias}` serves {}, not this endpoint",
                route.mode.as_str()
            ))
            .into_response();
        }
        let caller = record.caller();
        if let Some(caller) = &caller
            && let Err(refused) =
                guard::admit(&self.ledger, caller, alias, &inbound.estimate, record).await
        {
            return refused;
        }
        let routing = route.policy.as_ref().map(|policy| Routing {
            policy,
            shape: policy::request_shape(
                alias,
                inbound.request.mode,
                &inbound.estimate,
                inbound.request.stream,
            ),
        });
        let hops = self.order(routing.as_ref(), route).await;
        let mut notes: Vec<Note> = Vec::new();
        for (index, hop) in hops.iter().enumerate() {
            let model = &hop.model;
            let tried = self.try_candidate(hop, inbound, record, caller.as_ref());
            let (result, status) = match tried.await {
                Ok(tried) => tried,
                Err(note) => {
                    notes.push(note);
                    continue;
                }
            };
            match result {
                Ok(response) => {
                    record.routed(&route.name, &notes, Some(&hop.meters));
                    return with_route(response, &model.alias, &notes);
                }
                Err(Failed::Final(error)) => {
                    record.routed(&route.name, &notes, None);
                    return with_route(error.into_response(), &model.alias, &notes);
                }
                Err(Failed::Next { reason, kind }) => {
                    let reason = self.redactor.scrub(&reason);
                    tracing::warn!(alias = %model.alias, provider = %model.provider.name, "attempt failed: {reason}");
                    let cooling = self.cooling_until(hop, kind);
                    notes.push(Note::failed(model, reason, kind).retry_at(cooling));
                    let left = (hops.len() - index - 1) as u32;
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
        record.routed(&route.name, &notes, None);
        exhausted(alias, &notes, self.ledger.now())
    }

    /// Attempts `model`, settling a failed attempt's quota: the result and
    /// the provider's status, or why it was skipped. A local backend that
    /// answers busy while other jobs of ours run on it has learned its limit
    /// ([`crate::gpu::jobs`]); the attempt then waits for a slot and is sent
    /// again, as often as [`BUSY_RETRIES`].
    async fn try_candidate(
        &self,
        hop: &Hop,
        inbound: &Inbound,
        record: &Arc<Record>,
        caller: Option<&Caller>,
    ) -> Result<(Result<Response<Body>, Failed>, Option<u16>), Note> {
        let (model, plan) = (&hop.model, &hop.plan);
        let mut busy = 0;
        loop {
            let mut hold = self.prepare(hop, inbound, record, caller).await?;
            let started = std::time::Instant::now();
            let result = self.attempt(hop, inbound, &mut hold).await;
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

    /// When a candidate that just failed for its limits comes out of the
    /// cooldown the ledger put it in (for the client's `retry-after`).
    fn cooling_until(&self, hop: &Hop, kind: FailureKind) -> Option<u64> {
        if !matches!(kind, FailureKind::RateLimited | FailureKind::QuotaExhausted) {
            return None;
        }
        let cooldown = self.ledger.outlook(&hop.plan).cooldown_ms;
        (cooldown > 0).then(|| self.ledger.now() + cooldown)
    }

    /// Whether a failed attempt was a local backend refusing a job for the
    /// others it runs (503 while this attempt still holds its slot).
    fn busy(&self, model: &Model, hold: &Hold) -> bool {
        hold.status == Some(503)
            && hold.local.is_some()
            && self.leases.learn_busy(&model.provider.name)
    }

    /// What must hold before an attempt on `model`: it accepts the request's
    /// fields, the caller may use its tier (and, for a paid one, has the
    /// budget), the ledger has room for it, and its local backend (if any)
    /// has a job slot and memory. Otherwise, why it is skipped.
    async fn prepare(
        &self,
        hop: &Hop,
        inbound: &Inbound,
        record: &Arc<Record>,
        caller: Option<&Caller>,
    ) -> Result<Hold, Note> {
        let (model, plan) = (&hop.model, &hop.plan);
        if let Some(feature) = refused(model, &inbound.features) {
            return Err(Note::refused(model, feature));
        }
        guard::tier(caller, model)?;
        let reservation = match self.ledger.reserve(plan, &inbound.estimate).await {
            Ok(reservation) => reservation,
            Err(denial) => {
                tracing::debug!(alias = %model.alias, "{denial}");
                return Err(Note::skipped(model, &denial));
            }
        };
        let mut hold = Hold::new(reservation, record);
        match guard::budget(&self.ledger, caller, model, &inbound.estimate).await {
            Ok(spend) => hold.spend = spend,
            Err(note) => {
                hold.settle(Outcome::NotSent).await;
                return Err(note);
            }
        }
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

    /// The route's hops in the policy's order. A policy that fails (a
    /// trap, a deadline) leaves the chain's order, with a warning.
    async fn order<'r>(&self, routing: Option<&Routing<'_>>, route: &'r Route) -> Vec<&'r Hop> {
        let hops: Vec<&Hop> = route.hops.iter().collect();
        let Some(Routing { policy, shape }) = routing else {
            return hops;
        };
        let seen: Vec<Candidate> = hops
            .iter()
            .map(|hop| policy::candidate(&hop.model, &hop.plan, &self.ledger, &self.leases))
            .collect();
        match self.plugins.order(policy, shape, &seen).await {
            Ok(order) => policy::apply(&order, &hops),
            Err(e) => {
                tracing::warn!(policy = %policy.name, "the routing policy failed; using the chain's order: {e}");
                hops
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
                let ms = ms.min(policy::MAX_WAIT_MS);
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
}
