//! While the shared ledger (Redis) does not answer: the gateway counts on
//! its own, in the scopes' in-memory windows, and adds those counts to
//! Redis once it answers again.
//!
//! The local windows start from nothing, so during an outage each gateway
//! holds the limits on its own: several gateways together may spend up to
//! that many times a limit, and the providers' own 429s still steer the
//! fallback. A window's local count is added at the moment of the merge,
//! so a sliding window holds it a little longer than it would have; a day's
//! or a month's counter gets exactly what was spent.

use super::plan::{Plan, Scope};
use super::redis::Shared;
use super::window::Window;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The scopes counted locally since Redis last answered.
#[derive(Default)]
pub struct Outage {
    touched: Mutex<BTreeMap<String, Arc<Scope>>>,
    /// Whether `touched` holds anything: read on every request, so that a
    /// gateway with Redis up takes no lock for it.
    pending: AtomicBool,
    merging: AtomicBool,
}

impl Outage {
    /// Remembers `plan`'s scopes as counted locally.
    pub fn note(&self, plan: &Plan) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        for scope in [&plan.provider, &plan.model] {
            touched.insert(scope.id.clone(), scope.clone());
        }
        self.pending.store(true, Ordering::Release);
    }

    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Adds every local count to Redis, and empties the local windows that
    /// were merged. A scope whose merge fails stays for the next try. One
    /// merge runs at a time.
    pub async fn merge(&self, shared: &Shared, now: u64) {
        if self.merging.swap(true, Ordering::AcqRel) {
            return;
        }
        let scopes: Vec<Arc<Scope>> = {
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            self.pending.store(false, Ordering::Release);
            std::mem::take(&mut *touched).into_values().collect()
        };
        let (mut merged, mut failed) = (0, 0);
        for scope in scopes {
            let used = local_usage(&scope, now);
            if used.iter().all(|&n| n == 0) {
                continue;
            }
            match shared.merge(&scope, &used, now).await {
                Ok(()) => {
                    empty(&scope, now);
                    merged += 1;
                }
                Err(e) => {
                    tracing::warn!(scope = %scope.label(), "could not merge a local count into Redis: {e}");
                    let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
                    touched.insert(scope.id.clone(), scope);
                    self.pending.store(true, Ordering::Release);
                    failed += 1;
                }
            }
        }
        if merged > 0 || failed > 0 {
            tracing::info!(
                merged,
                failed,
                "Redis answers again: merged what this gateway counted alone"
            );
        }
        self.merging.store(false, Ordering::Release);
    }
}

fn local_usage(scope: &Scope, now: u64) -> Vec<u64> {
    let mut state = scope.local.lock().unwrap_or_else(|e| e.into_inner());
    state.windows.iter_mut().map(|w| w.used(now)).collect()
}

fn empty(scope: &Scope, now: u64) {
    let mut state = scope.local.lock().unwrap_or_else(|e| e.into_inner());
    for window in &mut state.windows {
        *window = Window::new(window.rule, now);
    }
}
