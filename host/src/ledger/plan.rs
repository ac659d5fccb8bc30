//! From the catalogue's limits to counted windows: one [`Scope`] per
//! (provider, API key) for provider-wide limits and one per (provider, model,
//! API key) for per-model limits, and one [`Plan`] per alias naming both.

use super::clock::{HOUR_MS, MINUTE_MS};
use super::window::{Counter, Metric, Refill, Rule, Span, Window};
use crate::config::{Limits, Model, Price, Quota, WindowStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

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
    rules(&model.limits, &model.provider.quota)
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
    fn fingerprints_hide_the_key() {
        let fp = key_fingerprint(Some("gsk_live_secret"));
        assert_eq!(fp.len(), 8);
        assert!(!fp.contains("secret"));
        assert_ne!(fp, key_fingerprint(Some("gsk_live_other")));
        assert_eq!(key_fingerprint(None), "nokey");
    }
}
