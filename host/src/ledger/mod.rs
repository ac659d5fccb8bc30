//! Quota ledgers: every provider limit the catalogue declares, counted before
//! a request is sent, so the router skips a candidate that would answer 429
//! instead of finding out.
//!
//! The router *reserves* an attempt (one request and an estimate of its
//! tokens and cost) on every window of the candidate's provider and model;
//! a candidate without room is skipped with no network call. When the
//! attempt ends the reservation is *settled*: replaced by the usage the
//! provider reported, released when nothing reached the provider, and
//! corrected by the provider's own rate-limit headers. A 429 or 402 puts the
//! model (or, for a spent credit, the provider) into a cooldown.
//!
//! Counters live in memory behind one short lock per scope and are saved to
//! an embedded store every half second ([`store`]); with several gateways on
//! one set of keys, a Redis backend keeps one shared ledger ([`redis`]).

pub mod estimate;
pub mod headers;
pub mod keyed;
mod local;
mod outage;
pub mod plan;
pub mod redis;
pub mod report;
mod settle;
pub mod store;
use settle::settlement;
pub mod window;

use crate::clock::{self, Clock, rfc3339};
use estimate::Estimate;
use headers::RateHeaders;
use plan::{Level, Plan, SavedScope, Scope};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use window::{Full, Metric, Rule};

/// Longest cooldown after a 429 that stated no reset.
pub const MAX_BACKOFF_MS: u64 = 5 * clock::MINUTE_MS;
/// First cooldown after a 429 that stated no reset; doubles each time.
pub const FIRST_BACKOFF_MS: u64 = clock::SECOND_MS;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger store {path}: {message}")]
    Store { path: String, message: String },
    #[error("the Redis ledger: {0}")]
    Redis(String),
}

/// Where counts are kept.
pub enum Backend {
    /// In memory only (tests, simulations).
    Memory,
    /// In memory, saved to the embedded store in the data folder.
    Store(store::Store),
    /// In Redis, shared by every gateway that points at it.
    Redis(redis::Shared),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Store(_) => "embedded",
            Backend::Redis(_) => "redis",
        }
    }
}

/// One request's worth of each metric.
///
/// A request is *admitted* on what a provider can know when it arrives (the
/// prompt, plus `max_tokens` when the client sets one), which is how OpenAI
/// and Groq check token limits, so a free candidate is never skipped for a
/// reply length nobody asked for. It is *reserved* at the full estimate (a
/// default reply length when none was set) until the real usage replaces it,
/// so concurrent requests do not all spend the same headroom.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub requests: u64,
    pub tokens: u64,
    /// Millionths of a dollar.
    pub credit: u64,
    pub admit_tokens: u64,
    pub admit_credit: u64,
}

impl Amounts {
    /// What is counted.
    pub fn of(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::Tokens => self.tokens,
            Metric::Credit => self.credit,
        }
    }

    /// What must fit for the request to be sent.
    pub fn admit(&self, metric: Metric) -> u64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::Tokens => self.admit_tokens,
            Metric::Credit => self.admit_credit,
        }
    }
}

/// Why a candidate was skipped without being tried.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    Full {
        scope: String,
        window: &'static str,
        metric: Metric,
        needed: u64,
        full: Full,
        now: u64,
    },
    Cooling {
        scope: String,
        until: u64,
        cause: String,
        now: u64,
    },
}

impl Denial {
    /// When the candidate may have room again.
    pub fn retry_at(&self) -> Option<u64> {
        match self {
            Denial::Full { full, .. } => full.frees_at,
            Denial::Cooling { until, .. } => Some(*until),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Full {
                scope,
                window,
                metric,
                needed,
                full,
                now,
            } => match full.frees_at {
                Some(at) => write!(
                    f,
                    "skipped: the {window} limit of {scope} is used up ({} of {}), room again in {}",
                    show(*metric, full.used),
                    show(*metric, full.limit),
                    wait(*now, at)
                ),
                None => write!(
                    f,
                    "skipped: this request needs about {}, more than the {window} limit of {scope} ({})",
                    show(*metric, *needed),
                    show(*metric, full.limit)
                ),
            },
            Denial::Cooling {
                scope,
                until,
                cause,
                now,
            } => write!(
                f,
                "skipped: {scope} is cooling down after {cause} until {} (in {})",
                rfc3339(*until),
                wait(*now, *until)
            ),
        }
    }
}

fn show(metric: Metric, amount: u64) -> String {
    match metric {
        Metric::Requests => format!("{amount} requests"),
        Metric::Tokens => format!("{amount} tokens"),
        Metric::Credit => format!("${:.4}", amount as f64 / 1e6),
    }
}

fn wait(now: u64, at: u64) -> String {
    format!("{:.1}s", at.saturating_sub(now) as f64 / 1000.0)
}

/// How an attempt ended, for settling its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served; the provider's usage report, if it sent one.
    Served { usage: Option<(u64, u64)> },
    /// Never reached the provider (connection refused, plugin fault before
    /// sending): nothing is counted.
    NotSent,
    /// The provider answered with an error: the request counts, the tokens
    /// do not.
    Failed,
    /// 429: counts, and cools the model down.
    RateLimited,
    /// 402 or an exhausted quota: counts, and cools down until the next
    /// credit month (or day).
    QuotaExhausted,
}

/// A cooldown to start, decided before the backend applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cool {
    /// Until this instant.
    Until {
        level: Level,
        until: u64,
        cause: String,
    },
    /// Exponential backoff from the scope's streak.
    Backoff { level: Level, cause: String },
}

/// A provider's report of one window, matched to the rule it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync {
    pub level: Level,
    pub index: usize,
    pub remaining: u64,
    pub reset_in_ms: Option<u64>,
}

/// Everything a backend needs to settle one reservation.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub at: u64,
    pub reserved: Amounts,
    pub actual: Amounts,
    pub syncs: Vec<Sync>,
    pub cool: Option<Cool>,
    /// A success ends a 429 streak.
    pub success: bool,
}

/// The quota ledger shared by all requests.
pub struct Ledger {
    clock: Arc<dyn Clock>,
    backend: Backend,
    scopes: Mutex<BTreeMap<String, Arc<Scope>>>,
    /// What the store held at startup, taken as scopes are created.
    saved: Mutex<HashMap<String, SavedScope>>,
    /// What was counted here while Redis did not answer.
    outage: outage::Outage,
}

impl Ledger {
    pub fn new(backend: Backend, clock: Arc<dyn Clock>) -> Result<Arc<Self>, LedgerError> {
        let saved = match &backend {
            Backend::Store(store) => store.load()?,
            _ => HashMap::new(),
        };
        Ok(Arc::new(Ledger {
            clock,
            backend,
            scopes: Mutex::new(BTreeMap::new()),
            saved: Mutex::new(saved),
            outage: outage::Outage::default(),
        }))
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The plan for one alias, creating (or restoring) its scopes. Scopes are
    /// shared: every alias of a provider shares its provider-wide scope.
    pub fn plan(&self, model: &crate::config::Model) -> Arc<Plan> {
        let provider = &model.provider;
        let key = plan::key_fingerprint(provider.api_key.as_ref().map(|k| k.expose()));
        let provider_scope = self.scope(
            &provider.name,
            None,
            &key,
            plan::rules(&provider.limits, &provider.quota),
        );
        let model_scope = self.scope(
            &provider.name,
            Some(&model.model),
            &key,
            plan::model_rules(model),
        );
        Arc::new(Plan {
            alias: model.alias.clone(),
            provider: provider_scope,
            model: model_scope,
            price: model.price.clone(),
            completion_estimate: provider.quota.completion_estimate,
            quota: provider.quota.clone(),
            has_credit: provider.limits.credit_usd.is_some(),
        })
    }

    fn scope(
        &self,
        provider: &str,
        model: Option<&str>,
        key: &str,
        rules: Vec<Rule>,
    ) -> Arc<Scope> {
        let id = plan::scope_id(provider, model, key);
        let mut scopes = self.scopes.lock().expect("ledger scopes lock");
        if let Some(scope) = scopes.get(&id)
            && scope.rules == rules
        {
            return scope.clone();
        }
        // New, or its limits changed: carry the counts over by window name.
        let saved = scopes
            .get(&id)
            .map(|old| old.saved())
            .or_else(|| self.saved.lock().expect("ledger saved lock").remove(&id));
        let scope = Arc::new(Scope::new(provider, model, key, rules, saved, self.now()));
        scopes.insert(id, scope.clone());
        scope
    }

    /// Every scope, in id order.
    pub fn scopes(&self) -> Vec<Arc<Scope>> {
        self.scopes
            .lock()
            .expect("ledger scopes lock")
            .values()
            .cloned()
            .collect()
    }

    /// Reserves one attempt on `plan`, or says why it must be skipped.
    pub async fn reserve(
        self: &Arc<Self>,
        plan: &Arc<Plan>,
        estimate: &Estimate,
    ) -> Result<Reservation, Denial> {
        let now = self.now();
        let (prompt, completion) = estimate.tokens(plan.completion_estimate);
        let capped = estimate.completion_cap.unwrap_or(0);
        let cost = |completion| {
            plan.price
                .as_ref()
                .map_or(0, |p| p.micro_usd(prompt, completion))
        };
        let amounts = Amounts {
            requests: 1,
            // Saturating: a client's `max_tokens` near u64::MAX must not
            // wrap into a small count that slips under the token windows.
            tokens: prompt.saturating_add(completion),
            credit: cost(completion),
            admit_tokens: prompt.saturating_add(capped),
            admit_credit: cost(capped),
        };
        let local = match &self.backend {
            Backend::Redis(shared) => {
                if shared.reserve(plan, now, amounts).await? {
                    self.merge_when_back();
                    false
                } else {
                    local::reserve(plan, now, amounts)?;
                    self.outage.note(plan);
                    true
                }
            }
            _ => {
                local::reserve(plan, now, amounts)?;
                false
            }
        };
        Ok(Reservation {
            ledger: self.clone(),
            plan: plan.clone(),
            at: now,
            amounts,
            settled: false,
            local,
        })
    }

    /// Redis answered: if this gateway counted alone while it did not, add
    /// those counts to it, in the background.
    fn merge_when_back(self: &Arc<Self>) {
        if !self.outage.pending() {
            return;
        }
        let ledger = self.clone();
        tokio::spawn(async move {
            if let Backend::Redis(shared) = &ledger.backend {
                ledger.outage.merge(shared, ledger.now()).await;
            }
        });
    }

    /// Settles on the backend the reservation was made on: `local` when it
    /// was counted here while Redis did not answer.
    async fn settle(&self, plan: &Plan, settlement: Settlement, local: bool) {
        let now = self.now();
        match &self.backend {
            Backend::Redis(shared) if !local => shared.settle(plan, now, settlement).await,
            _ => local::settle(plan, now, &settlement),
        }
    }

    /// Saves what changed to the embedded store (no-op for other backends).
    pub async fn flush(&self) {
        let Backend::Store(store) = &self.backend else {
            return;
        };
        let changed: Vec<(String, SavedScope)> = self
            .scopes()
            .into_iter()
            .filter(|scope| scope.dirty.swap(false, Ordering::AcqRel))
            .map(|scope| (scope.id.clone(), scope.saved()))
            .collect();
        if changed.is_empty() {
            return;
        }
        let store = store.clone();
        let count = changed.len();
        let result = tokio::task::spawn_blocking(move || store.save(&changed)).await;
        match result {
            Ok(Ok(())) => tracing::trace!(scopes = count, "ledger saved"),
            Ok(Err(e)) => tracing::error!("could not save the ledger: {e}"),
            Err(e) => tracing::error!("could not save the ledger: {e}"),
        }
    }

    /// Saves every `interval` until the ledger is dropped by everyone else.
    pub fn spawn_saver(self: &Arc<Self>, interval: std::time::Duration) {
        if !matches!(self.backend, Backend::Store(_)) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ledger) = weak.upgrade() else { return };
                ledger.flush().await;
            }
        });
    }

    /// What a routing policy is told of a candidate: each window's limit and
    /// what remains, and how long it still cools down. The shared Redis
    /// ledger is not asked (a round trip per candidate per request): there
    /// the list is empty and the cooldown 0, and the reservation still
    /// enforces both.
    pub fn outlook(&self, plan: &Plan) -> Outlook {
        if matches!(self.backend, Backend::Redis(_)) {
            return Outlook::default();
        }
        local::outlook(plan, self.now())
    }

    /// What `/admin/quotas` and `tollgate quotas` show: the providers'
    /// scopes (gateway keys have `/admin/keys`).
    pub async fn report(&self) -> report::QuotaReport {
        self.report_of(|scope| !scope.provider.starts_with(keyed::KEY_SCOPE_PREFIX))
            .await
    }

    /// The rows of the scopes `keep` picks.
    pub async fn report_of(&self, keep: impl Fn(&Scope) -> bool) -> report::QuotaReport {
        let now = self.now();
        let mut scopes = self.scopes();
        scopes.retain(|scope| keep(scope));
        let rows = match &self.backend {
            Backend::Redis(shared) => shared.report(&scopes, now).await,
            _ => Ok(local::report(&scopes, now)),
        };
        report::QuotaReport::new(self.backend.name(), now, rows)
    }
}

/// A candidate's quota as a policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outlook {
    /// (window, limit, remaining), provider-wide windows first.
    pub headroom: Vec<(&'static str, u64, u64)>,
    pub cooldown_ms: u64,
}

/// One attempt's hold on its candidate's quota. Settle it with
/// [`Reservation::settle`]; dropped unsettled (the client went away mid-way),
/// it stays counted as estimated, since the provider may well have served it.
pub struct Reservation {
    ledger: Arc<Ledger>,
    plan: Arc<Plan>,
    at: u64,
    amounts: Amounts,
    settled: bool,
    /// Counted in this gateway's own windows, Redis being away.
    local: bool,
}

impl Reservation {
    pub fn amounts(&self) -> Amounts {
        self.amounts
    }

    pub async fn settle(mut self, outcome: Outcome, headers: &RateHeaders) {
        self.settled = true;
        let settlement = settlement(&self.plan, self.at, self.amounts, outcome, headers);
        self.ledger.settle(&self.plan, settlement, self.local).await;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let settlement = Settlement {
            at: self.at,
            reserved: self.amounts,
            actual: self.amounts,
            syncs: Vec::new(),
            cool: None,
            success: false,
        };
        if self.local || !matches!(self.ledger.backend, Backend::Redis(_)) {
            local::settle(&self.plan, self.ledger.now(), &settlement);
        }
    }
}

/// The backoff after `streak` earlier 429s without a stated reset.
pub fn backoff_ms(streak: u32) -> u64 {
    FIRST_BACKOFF_MS
        .saturating_mul(1u64 << streak.min(20))
        .min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests;
