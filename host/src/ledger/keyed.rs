//! Gateway keys on the ledger's own machinery, so a key's limits are kept
//! like a provider's: in memory and the embedded store, or shared in Redis
//! by every gateway that points at it.
//!
//! A key has two scopes. Its *rates* scope holds `rpm`, `rpd`, `tpm`, `tpd`
//! and a month's requests and tokens; one reservation per client request is
//! made on it, whatever the chain then does. Its *spend* scope holds the
//! month's dollars (the `budget_usd`, or no limit); a reservation is made on
//! it only for an attempt on a paid candidate, priced at that candidate's
//! price. They are apart because a spent budget must not stop a request
//! from reaching a free candidate: a window that is over its limit refuses
//! even a reservation of zero.

use super::Ledger;
use super::plan::{Plan, Scope};
use super::window::UNLIMITED;
use crate::config::{Limits, Price, Quota};
use std::sync::Arc;

/// The prefix of every key scope's provider name, which no provider can
/// have (`:` is not allowed in a provider's name).
pub const KEY_SCOPE_PREFIX: &str = "key:";

/// The plans of one key.
#[derive(Debug)]
pub struct KeyPlans {
    /// Rates, reserved once per request.
    pub rates: Arc<Plan>,
    spend: Arc<Scope>,
    /// A scope with no windows, the second scope of both plans: its
    /// cooldown is never set, since key settlements carry no provider
    /// headers.
    none: Arc<Scope>,
}

impl Ledger {
    /// The scopes of the key `name`, created or restored (their counts
    /// carry over when the limits change, by window name, as a provider's
    /// do). `rates` are the key's request and token limits; the month's
    /// windows are added without a limit so that its usage is counted.
    pub fn key_plans(&self, name: &str, rates: &Limits, budget_usd: Option<f64>) -> KeyPlans {
        let provider = format!("{KEY_SCOPE_PREFIX}{name}");
        let quota = Quota::default();
        let rates = Limits {
            rpmonth: Some(UNLIMITED),
            tpmonth: Some(UNLIMITED),
            ..rates.clone()
        };
        let spend = Limits {
            credit_usd: Some(budget_usd.unwrap_or(UNLIMITED as f64 / 1e6)),
            ..Limits::default()
        };
        let rates = self.scope(&provider, None, "key", super::plan::rules(&rates, &quota));
        let spend = self.scope(
            &provider,
            Some("spend"),
            "key",
            super::plan::rules(&spend, &quota),
        );
        let none = self.scope(&provider, Some("-"), "key", Vec::new());
        KeyPlans {
            rates: Arc::new(key_plan(name, rates, none.clone(), None)),
            spend,
            none,
        }
    }
}

impl KeyPlans {
    /// The plan that prices an attempt on a paid candidate against the
    /// key's budget.
    pub fn spend_plan(&self, name: &str, price: Option<&Price>) -> Arc<Plan> {
        Arc::new(key_plan(
            name,
            self.spend.clone(),
            self.none.clone(),
            price.cloned(),
        ))
    }
}

fn key_plan(name: &str, first: Arc<Scope>, none: Arc<Scope>, price: Option<Price>) -> Plan {
    Plan {
        alias: name.to_owned(),
        provider: first,
        model: none,
        price,
        completion_estimate: Quota::default().completion_estimate,
        quota: Quota::default(),
        has_credit: true,
    }
}
