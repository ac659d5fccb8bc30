//! The in-process backend: each scope's windows behind one short lock.
//!
//! A reservation locks the provider scope, then the model scope (always in
//! that order, so two requests cannot deadlock), checks every window and the
//! cooldowns, and counts itself only if everything has room.

use super::plan::{Level, LocalState, Plan, Scope};
use super::report::Row;
use super::{Amounts, Cool, Denial, Outlook, Settlement, backoff_ms};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

fn lock(scope: &Scope) -> MutexGuard<'_, LocalState> {
    scope.local.lock().expect("ledger scope lock")
}

pub fn reserve(plan: &Plan, now: u64, amounts: Amounts) -> Result<(), Denial> {
    let mut provider = lock(&plan.provider);
    let mut model = lock(&plan.model);
    for (scope, state) in [(&*plan.provider, &*provider), (&*plan.model, &*model)] {
        if state.cooldown.until > now {
            return Err(Denial::Cooling {
                scope: scope.label(),
                until: state.cooldown.until,
                cause: state.cooldown.cause.clone(),
                now,
            });
        }
    }
    for (scope, state) in [
        (&*plan.provider, &mut *provider),
        (&*plan.model, &mut *model),
    ] {
        for window in &mut state.windows {
            let needed = amounts.admit(window.rule.metric);
            if let Err(full) = window.check(now, needed) {
                return Err(Denial::Full {
                    scope: scope.label(),
                    window: window.rule.name,
                    metric: window.rule.metric,
                    needed,
                    full,
                    now,
                });
            }
        }
    }
    for state in [&mut *provider, &mut *model] {
        for window in &mut state.windows {
            window.reserve(now, amounts.of(window.rule.metric));
        }
    }
    drop((provider, model));
    mark(plan);
    Ok(())
}

pub fn settle(plan: &Plan, now: u64, settlement: &Settlement) {
    let mut provider = lock(&plan.provider);
    let mut model = lock(&plan.model);
    for state in [&mut *provider, &mut *model] {
        for window in &mut state.windows {
            let metric = window.rule.metric;
            window.settle(
                now,
                settlement.at,
                settlement.reserved.of(metric),
                settlement.actual.of(metric),
            );
        }
    }
    for sync in &settlement.syncs {
        let state = match sync.level {
            Level::Provider => &mut *provider,
            Level::Model => &mut *model,
        };
        if let Some(window) = state.windows.get_mut(sync.index) {
            window.sync(now, sync.remaining, sync.reset_in_ms);
        }
    }
    if settlement.success {
        model.cooldown.streak = 0;
    }
    match &settlement.cool {
        Some(Cool::Until {
            level,
            until,
            cause,
        }) => {
            let state = if *level == Level::Provider {
                &mut *provider
            } else {
                &mut *model
            };
            state.cooldown.until = state.cooldown.until.max(*until);
            state.cooldown.cause = cause.clone();
        }
        Some(Cool::Backoff { level, cause }) => {
            let state = if *level == Level::Provider {
                &mut *provider
            } else {
                &mut *model
            };
            let until = now + backoff_ms(state.cooldown.streak);
            state.cooldown.streak += 1;
            state.cooldown.until = state.cooldown.until.max(until);
            state.cooldown.cause = cause.clone();
        }
        None => {}
    }
    drop((provider, model));
    mark(plan);
}

fn mark(plan: &Plan) {
    plan.provider.dirty.store(true, Ordering::Release);
    plan.model.dirty.store(true, Ordering::Release);
}

pub fn outlook(plan: &Plan, now: u64) -> Outlook {
    let mut outlook = Outlook::default();
    for scope in [&plan.provider, &plan.model] {
        let mut state = lock(scope);
        outlook.cooldown_ms = outlook
            .cooldown_ms
            .max(state.cooldown.until.saturating_sub(now));
        for window in &mut state.windows {
            let remaining = window.remaining(now);
            outlook
                .headroom
                .push((window.rule.name, window.rule.limit, remaining));
        }
    }
    outlook
}

pub fn report(scopes: &[Arc<Scope>], now: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    for scope in scopes {
        let mut state = lock(scope);
        let cooldown = (state.cooldown.until > now).then(|| state.cooldown.clone());
        for window in &mut state.windows {
            rows.push(Row::new(
                scope,
                window.rule,
                window.used(now),
                window.resets_at(now),
                cooldown.as_ref(),
            ));
        }
        if state.windows.is_empty()
            && let Some(cooldown) = &cooldown
        {
            rows.push(Row::cooldown_only(scope, cooldown));
        }
    }
    rows
}
