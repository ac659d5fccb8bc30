//! The shared backend: one ledger in Redis for several gateways that spend
//! the same provider keys.
//!
//! Every reservation and settlement is one atomic Lua script (`ledger.lua`),
//! so two gateways can never both take the last request of a window. Redis
//! being unreachable does not stop the gateway: it counts on its own
//! meanwhile, and merges those counts back when Redis answers again (see
//! `ledger::outage`).

use super::plan::{Level, Plan, Scope};
use super::report::Row;
use super::window::{Full, Refill, Rule, calendar_end, calendar_start};
use super::{Amounts, Cool, Denial, FIRST_BACKOFF_MS, LedgerError, MAX_BACKOFF_MS, Settlement};
use crate::clock::{Clock, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SCRIPT: &str = include_str!("ledger.lua");

/// The longest a request waits on Redis before it is counted locally.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Connection and script for the shared ledger.
#[derive(Clone)]
pub struct Shared {
    connection: ConnectionManager,
    script: Arc<redis::Script>,
    prefix: String,
    /// When an outage was last logged (Unix seconds), so a Redis that stays
    /// down is reported every ten seconds rather than on every request.
    last_warning: Arc<AtomicU64>,
}

impl Shared {
    /// Connects to `url` (`redis://host:port/db`), failing fast if Redis is
    /// not there at startup.
    pub async fn connect(url: &str) -> Result<Shared, LedgerError> {
        let client = redis::Client::open(url).map_err(|e| LedgerError::Redis(e.to_string()))?;
        // Short timeouts and one retry: an outage must cost a request half a
        // second at most, while the manager reconnects in the background.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| LedgerError::Redis(format!("no answer from {} in 5 s", redact_url(url))))?
        .map_err(|e| LedgerError::Redis(format!("{}: {e}", redact_url(url))))?;
        Ok(Shared {
            connection,
            script: Arc::new(redis::Script::new(SCRIPT)),
            prefix: "tollgate:ledger:".into(),
            last_warning: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs the script, giving up after [`CALL_TIMEOUT`].
    async fn call<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, redis::RedisError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection))
            .await
            .unwrap_or_else(|_| Err((redis::ErrorKind::Io, "no answer within 500 ms").into()))
    }

    fn warn(&self, what: &str, error: &redis::RedisError) {
        let now = SystemClock.now_ms() / 1000;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("the Redis ledger is unreachable; {what}: {error}");
        }
    }

    fn cooldown_key(&self, scope: &Scope) -> String {
        format!("{}{}:cooldown", self.prefix, scope.id)
    }

    /// Adds one window to a reserve, peek or merge call: its key, then its
    /// kind, limit and period, which every such operation reads first.
    fn window<'a, 'b>(
        &self,
        invocation: &'b mut redis::ScriptInvocation<'a>,
        scope: &Scope,
        rule: &Rule,
        now: u64,
    ) -> &'b mut redis::ScriptInvocation<'a> {
        let (kind, period) = shape(rule, now);
        invocation
            .key(self.window_key(scope, rule, now))
            .arg(kind)
            .arg(rule.limit)
            .arg(period)
    }

    /// The key of `rule`'s counter at instant `at` (calendar windows have one
    /// key per period).
    fn window_key(&self, scope: &Scope, rule: &Rule, at: u64) -> String {
        match rule.refill {
            Refill::Daily { .. } | Refill::Monthly { .. } => format!(
                "{}{}:{}:{}",
                self.prefix,
                scope.id,
                rule.name,
                calendar_start(rule.refill, at)
            ),
            _ => format!("{}{}:{}", self.prefix, scope.id, rule.name),
        }
    }

    /// Reserves `amounts` on every window of `plan`: `Ok(false)` when Redis
    /// could not be reached (nothing was counted there).
    pub async fn reserve(&self, plan: &Plan, now: u64, amounts: Amounts) -> Result<bool, Denial> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(self.cooldown_key(&plan.provider))
            .key(self.cooldown_key(&plan.model))
            .arg("reserve")
            .arg(now);
        let windows = windows(plan);
        for (scope, rule) in &windows {
            self.window(&mut invocation, scope, rule, now)
                .arg(amounts.of(rule.metric))
                .arg(amounts.admit(rule.metric));
        }
        let answer: Vec<redis::Value> = match self.call(&invocation).await {
            Ok(answer) => answer,
            Err(e) => {
                self.warn("counting on this gateway alone until it answers", &e);
                return Ok(false);
            }
        };
        let int = |i: usize| -> u64 { answer.get(i).and_then(as_u64).unwrap_or(0) };
        match int(0) {
            1 => {
                let scope = if int(1) == 1 {
                    &plan.provider
                } else {
                    &plan.model
                };
                Err(Denial::Cooling {
                    scope: scope.label(),
                    until: int(2),
                    cause: answer.get(3).and_then(as_string).unwrap_or_default(),
                    now,
                })
            }
            2 => {
                let (scope, rule) = windows[(int(1) as usize).saturating_sub(1)];
                let frees = answer.get(3).and_then(as_i64).unwrap_or(-1);
                Err(Denial::Full {
                    scope: scope.label(),
                    window: rule.name,
                    metric: rule.metric,
                    needed: amounts.admit(rule.metric),
                    full: Full {
                        used: int(2),
                        limit: rule.limit,
                        frees_at: (frees >= 0).then_some(frees as u64),
                    },
                    now,
                })
            }
            _ => Ok(true),
        }
    }

    /// Adds what this gateway counted alone, `used[i]` for `scope.rules[i]`.
    pub async fn merge(
        &self,
        scope: &Scope,
        used: &[u64],
        now: u64,
    ) -> Result<(), redis::RedisError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg("merge").arg(now);
        for (rule, amount) in scope.rules.iter().zip(used) {
            self.window(&mut invocation, scope, rule, now).arg(*amount);
        }
        self.call::<redis::Value>(&invocation).await.map(|_| ())
    }

    pub async fn settle(&self, plan: &Plan, now: u64, settlement: Settlement) {
        let (level, until, cause) = match &settlement.cool {
            None => (0, 0, String::new()),
            Some(Cool::Until {
                level,
                until,
                cause,
            }) => (level_index(*level), *until, cause.clone()),
            Some(Cool::Backoff { level, cause }) => (level_index(*level), 0, cause.clone()),
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(self.cooldown_key(&plan.provider))
            .key(self.cooldown_key(&plan.model))
            .arg("settle")
            .arg(now)
            .arg(settlement.at)
            .arg(if settlement.success { "1" } else { "0" })
            .arg(level)
            .arg(until)
            .arg(cause)
            .arg(FIRST_BACKOFF_MS)
            .arg(MAX_BACKOFF_MS);
        for (level, scope) in [
            (Level::Provider, &plan.provider),
            (Level::Model, &plan.model),
        ] {
            for (index, rule) in scope.rules.iter().enumerate() {
                invocation
                    .key(self.window_key(scope, rule, now))
                    .key(self.window_key(scope, rule, settlement.at));
                let (kind, period) = shape(rule, now);
                let delta = settlement.actual.of(rule.metric) as i64
                    - settlement.reserved.of(rule.metric) as i64;
                let sync = settlement
                    .syncs
                    .iter()
                    .find(|s| s.level == level && s.index == index);
                invocation
                    .arg(kind)
                    .arg(rule.limit)
                    .arg(period)
                    .arg(delta)
                    .arg(sync.map_or(-1, |s| s.remaining as i64))
                    .arg(sync.and_then(|s| s.reset_in_ms).map_or(-1, |r| r as i64));
            }
        }
        if let Err(e) = self.call::<redis::Value>(&invocation).await {
            self.warn("a request went uncounted", &e);
        }
    }

    pub async fn report(&self, scopes: &[Arc<Scope>], now: u64) -> Result<Vec<Row>, LedgerError> {
        let mut rows = Vec::new();
        for scope in scopes {
            let mut invocation = self.script.prepare_invoke();
            invocation
                .key(self.cooldown_key(scope))
                .arg("peek")
                .arg(now);
            for rule in &scope.rules {
                self.window(&mut invocation, scope, rule, now);
            }
            let answer: Vec<redis::Value> = self
                .call(&invocation)
                .await
                .map_err(|e| LedgerError::Redis(e.to_string()))?;
            let until = answer.first().and_then(as_u64).unwrap_or(0);
            let cooldown = (until > now).then(|| super::plan::Cooldown {
                until,
                streak: 0,
                cause: answer.get(1).and_then(as_string).unwrap_or_default(),
            });
            for (i, rule) in scope.rules.iter().enumerate() {
                let used = answer.get(2 + 2 * i).and_then(as_u64).unwrap_or(0);
                let resets = answer.get(3 + 2 * i).and_then(as_i64).unwrap_or(-1);
                rows.push(Row::new(
                    scope,
                    *rule,
                    used,
                    (resets >= 0).then_some(resets as u64),
                    cooldown.as_ref(),
                ));
            }
            if scope.rules.is_empty()
                && let Some(cooldown) = &cooldown
            {
                rows.push(Row::cooldown_only(scope, cooldown));
            }
        }
        Ok(rows)
    }
}

/// Every window of the plan, provider-wide first.
fn windows(plan: &Plan) -> Vec<(&Scope, &Rule)> {
    [&plan.provider, &plan.model]
        .into_iter()
        .flat_map(|scope| scope.rules.iter().map(move |rule| (&**scope, rule)))
        .collect()
}

/// The script's name for a window's kind, and its period (or, for calendar
/// windows, the end of the current period).
fn shape(rule: &Rule, now: u64) -> (&'static str, u64) {
    match rule.refill {
        Refill::Sliding { period_ms } => ("sliding", period_ms),
        Refill::Bucket { period_ms } => ("bucket", period_ms),
        calendar => (
            "calendar",
            calendar_end(calendar, calendar_start(calendar, now), None),
        ),
    }
}

fn level_index(level: Level) -> u8 {
    match level {
        Level::Provider => 1,
        Level::Model => 2,
    }
}

fn as_i64(value: &redis::Value) -> Option<i64> {
    match value {
        redis::Value::Int(n) => Some(*n),
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        redis::Value::SimpleString(text) => text.parse().ok(),
        _ => None,
    }
}

fn as_u64(value: &redis::Value) -> Option<u64> {
    as_i64(value).and_then(|n| u64::try_from(n).ok())
}

fn as_string(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// `redis://:password@host` → `redis://***@host`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
