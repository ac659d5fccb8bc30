//! From the catalogue's limits to counted windows: one [`Scope`] per
//! (provider, API key) for provider-wide limits and one per (provider, model,
//! API key) for per-model limits, and one [`Plan`] per alias naming both.

use super::window::{Counter, Metric, Refill, Rule, Span, Window};
use crate::clock::{HOUR_MS, MINUTE_MS};
use crate::config::{Limits, Model, Price, Quota, WindowStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A cooldown: no request until `until` (ms), after `cause`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    pub until: u64,
    /// Consecutive 429s without a stated reset, for the exponential backoff.
    pub streak: u32,
    #[serde(default)]
    pub cause: String,
}

/// The counters of one scope, as the local backend holds them.
#[derive(Debug)]
pub struct LocalState {
    pub windows: Vec<Window>,
    pub cooldown: Cooldown,
}

/// What the embedded store keeps of a scope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SavedScope {
    pub windows: Vec<(String, Counter)>,
    #[serde(default)]
    pub cooldown: Cooldown,
}

/// Everything counted for one provider (or one of its models) under one key.
#[derive(Debug)]
pub struct Scope {
    /// `groq/llama-3.1-8b-instant#1a2b3c4d`, or `groq/*#1a2b3c4d` for the
    /// provider-wide limits; the suffix is a fingerprint of the API key.
    pub id: String,
    pub provider: String,
    /// `None` for the provider-wide scope.
    pub model: Option<String>,
    pub key: String,
    pub rules: Vec<Rule>,
    pub local: Mutex<LocalState>,
    /// Changed since the store last saved it.
    pub dirty: AtomicBool,
    /// Recent latency and failures, for routing policies.
    pub health: Health,
}

/// Exponentially weighted recent latency and error rate, updated without a
/// lock (a lost update under a race only blurs a statistic).
#[derive(Debug, Default)]
pub struct Health {
    /// Milliseconds to response headers, ×16 for sub-millisecond resolution.
    latency: AtomicU32,
    /// Share of failed attempts, in parts per 65 536.
    errors: AtomicU32,
}

impl Health {
    /// Weight of the newest sample: 1/8.
    const SHIFT: u32 = 3;

    pub fn record(&self, ok: bool, latency_ms: Option<f64>) {
        Self::blend(&self.errors, if ok { 0 } else { 65_535 }, false);
        if let Some(ms) = latency_ms {
            Self::blend(
                &self.latency,
                (ms * 16.0).clamp(1.0, u32::MAX as f64) as u32,
                true,
            );
        }
    }

    /// Moves `stat` an eighth of the way to `sample`; a latency never
    /// measured (0) takes the first sample as it is.
    fn blend(stat: &AtomicU32, sample: u32, seed: bool) {
        let old = stat.load(Ordering::Relaxed);
        let new = if seed && old == 0 {
            sample
        } else {
            (old as i64 + ((sample as i64 - old as i64) >> Self::SHIFT)).max(0) as u32
        };
        stat.store(new, Ordering::Relaxed);
    }

    /// (error rate 0–1, latency in ms; 0 when never measured).
    pub fn snapshot(&self) -> (f32, u32) {
        let errors = self.errors.load(Ordering::Relaxed) as f32 / 65_535.0;
        (errors, self.latency.load(Ordering::Relaxed) / 16)
    }
}

impl Scope {
    pub fn new(
        provider: &str,
        model: Option<&str>,
        key: &str,
        rules: Vec<Rule>,
        saved: Option<SavedScope>,
        now: u64,
    ) -> Self {
        let id = scope_id(provider, model, key);
        let saved = saved.unwrap_or_default();
        let windows = rules
            .iter()
            .map(
                |rule| match saved.windows.iter().find(|(name, _)| name == rule.name) {
                    Some((_, counter)) => Window::restore(*rule, counter.clone(), now),
                    None => Window::new(*rule, now),
                },
            )
            .collect();
        Scope {
            id,
            provider: provider.to_owned(),
            model: model.map(str::to_owned),
            key: key.to_owned(),
            rules,
            local: Mutex::new(LocalState {
                windows,
                cooldown: saved.cooldown,
            }),
            dirty: AtomicBool::new(false),
            health: Health::default(),
        }
    }

    /// A short label for messages: `groq` or `groq/llama-3.1-8b-instant`.
    pub fn label(&self) -> String {
        match &self.model {
            Some(model) => format!("{}/{model}", self.provider),
            None => self.provider.clone(),
        }
    }

    pub fn saved(&self) -> SavedScope {
        let state = self.local.lock().expect("ledger scope lock");
        SavedScope {
            windows: state
                .windows
                .iter()
                .map(|w| (w.rule.name.to_owned(), w.counter().clone()))
                .collect(),
            cooldown: state.cooldown.clone(),
        }
    }
}

pub fn scope_id(provider: &str, model: Option<&str>, key: &str) -> String {
    format!("{provider}/{}#{key}", model.unwrap_or("*"))
}

/// Which of a plan's two scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Provider,
    Model,
}

/// What the ledger needs to know about one alias.
#[derive(Debug)]
pub struct Plan {
    pub alias: String,
    pub provider: std::sync::Arc<Scope>,
    pub model: std::sync::Arc<Scope>,
    pub price: Option<Price>,
    pub completion_estimate: u64,
    pub quota: Quota,
    /// Whether the provider has a dollar credit (a 402 then waits for the
    /// next credit month rather than the next day).
    pub has_credit: bool,
}

impl Plan {
    pub fn scope(&self, level: Level) -> &Scope {
        match level {
            Level::Provider => &self.provider,
            Level::Model => &self.model,
        }
    }
}

/// The first 8 hex digits of the key's SHA-256: enough to tell keys apart in
/// the store and admin output, nothing an attacker can use.
pub fn key_fingerprint(key: Option<&str>) -> String {
    match key {
        None => "nokey".into(),
        Some(key) => {
            let digest = Sha256::digest(key.as_bytes());
            digest[..4].iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

/// The windows a set of limits asks for.
pub fn rules(limits: &Limits, quota: &Quota) -> Vec<Rule> {
    let rolling = |period_ms| match quota.windows {
        WindowStyle::Sliding => Refill::Sliding { period_ms },
        WindowStyle::Bucket => Refill::Bucket { period_ms },
    };
    let daily = Refill::Daily {
        offset_ms: quota.daily_offset_ms(),
    };
    let monthly = Refill::Monthly {
        day: quota.monthly_reset_day,
    };
    let table: [(&'static str, Option<u64>, Metric, Span, Refill); 8] = [
        (
            "rpm",
            limits.rpm,
            Metric::Requests,
            Span::Minute,
            rolling(MINUTE_MS),
        ),
        (
            "rph",
            limits.rph,
            Metric::Requests,
            Span::Hour,
            rolling(HOUR_MS),
        ),
        ("rpd", limits.rpd, Metric::Requests, Span::Day, daily),
        (
            "rpmonth",
            limits.rpmonth,
            Metric::Requests,
            Span::Month,
            monthly,
        ),
        (
            "tpm",
            limits.tpm,
            Metric::Tokens,
            Span::Minute,
            rolling(MINUTE_MS),
        ),
        (
            "tph",
            limits.tph,
            Metric::Tokens,
            Span::Hour,
            rolling(HOUR_MS),
        ),
        ("tpd", limits.tpd, Metric::Tokens, Span::Day, daily),
        (
            "tpmonth",
            limits.tpmonth,
            Metric::Tokens,
            Span::Month,
            monthly,
        ),
    ];
    let mut rules: Vec<Rule> = table
        .into_iter()
        .filter_map(|(name, limit, metric, span, refill)| {
            limit.map(|limit| Rule {
                name,
                metric,
                span,
                limit,
                refill,
            })
        })
        .collect();
    if let Some(credit) = limits.credit_usd {
        rules.push(Rule {
            name: "credit_usd",
            metric: Metric::Credit,
            span: Span::Month,
            limit: (credit * 1e6).round() as u64,
            refill: monthly,
        });
    }
    rules
}

/// The per-model rules, or nothing: a model with no limits of its own still
/// gets a scope, since 429 cooldowns are per model.
pub fn model_rules(model: &Model) -> Vec<Rule> {
    let mut rules = rules(&model.limits, &model.provider.quota);
    if model.price.is_some() {
        rules.push(spend_rule(&model.provider.quota));
    }
    rules
}

/// A priced model's month of spend, counted without a limit, so
/// `/admin/quotas` shows what each provider cost this month.
fn spend_rule(quota: &Quota) -> Rule {
    Rule {
        name: "spend_usd",
        metric: Metric::Credit,
        span: Span::Month,
        limit: super::window::UNLIMITED,
        refill: Refill::Monthly {
            day: quota.monthly_reset_day,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_rules_with_the_providers_windows() {
        let limits = Limits {
            rpm: Some(5),
            tpd: Some(1_000_000),
            credit_usd: Some(0.10),
            ..Limits::default()
        };
        let quota = Quota {
            windows: WindowStyle::Bucket,
            daily_reset: "07:00".into(),
            ..Quota::default()
        };
        let rules = rules(&limits, &quota);
        let names: Vec<_> = rules.iter().map(|r| r.name).collect();
        assert_eq!(names, ["rpm", "tpd", "credit_usd"]);
        assert_eq!(
            rules[0].refill,
            Refill::Bucket {
                period_ms: MINUTE_MS
            }
        );
        assert_eq!(
            rules[1].refill,
            Refill::Daily {
                offset_ms: 7 * HOUR_MS
            }
        );
        assert_eq!(rules[2].limit, 100_000);
        assert_eq!(rules[2].metric, Metric::Credit);
    }

    #[test]
    fn health_follows_recent_attempts() {
        let health = Health::default();
        assert_eq!(health.snapshot(), (0.0, 0));
        health.record(true, Some(100.0));
        assert_eq!(health.snapshot().1, 100);
        for _ in 0..30 {
            health.record(false, None);
        }
        assert!(health.snapshot().0 > 0.95);
        for _ in 0..30 {
            health.record(true, Some(20.0));
        }
        let (errors, latency) = health.snapshot();
        assert!(
            errors < 0.05 && (20..25).contains(&latency),
            "{errors} {latency}"
        );
    }

    #[test]
    fn fingerprints_hide_the_key() {
        let fp = key_fingerprint(Some("gsk_live_secret"));
        assert_eq!(fp.len(), 8);
        assert!(!fp.contains("secret"));
        assert_ne!(fp, key_fingerprint(Some("gsk_live_other")));
        assert_eq!(key_fingerprint(None), "nokey");
    }
}
