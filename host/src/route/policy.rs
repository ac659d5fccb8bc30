//! The router's side of routing policies: what a policy is told of a request
//! and its candidates, and how its answers are applied. The policy only
//! orders; the ledger still skips a candidate without room, whatever the
//! policy says.

use crate::config::{Model, Tier};
use crate::gpu::Leases;
use crate::ledger::Ledger;
use crate::ledger::estimate::Estimate;
use crate::ledger::plan::Plan;
use crate::plugins::bindings::Mode;
use crate::plugins::bindings::policy::{
    Candidate, GpuLease, Headroom, RequestShape, Tier as WitTier,
};

/// The longest a policy may make a request wait between attempts.
pub const MAX_WAIT_MS: u32 = 10_000;

pub fn request_shape(alias: &str, mode: Mode, estimate: &Estimate, stream: bool) -> RequestShape {
    let (prompt, completion) = estimate.tokens(0);
    RequestShape {
        mode,
        alias: alias.to_owned(),
        estimated_tokens: prompt.saturating_add(completion),
        stream,
    }
}

/// A candidate as the policy sees it.
pub fn candidate(model: &Model, plan: &Plan, ledger: &Ledger, leases: &Leases) -> Candidate {
    let outlook = ledger.outlook(plan);
    let (error_rate, latency_ms) = plan.model.health.snapshot();
    Candidate {
        alias: model.alias.clone(),
        provider: model.provider.name.clone(),
        tier: match model.tier {
            Tier::Free => WitTier::Free,
            Tier::Subscription => WitTier::Subscription,
            Tier::Paid => WitTier::Paid,
            Tier::Local => WitTier::Local,
        },
        local: model.tier == Tier::Local || model.gpu.is_some(),
        headroom: outlook
            .headroom
            .into_iter()
            .map(|(window, limit, remaining)| Headroom {
                window: window.to_owned(),
                limit,
                remaining,
            })
            .collect(),
        cooldown_ms: outlook.cooldown_ms,
        error_rate,
        latency_ms,
        gpu: model.gpu.as_ref().map(|gpu| GpuLease {
            vram_mb: gpu.vram_mb,
            resident: leases.resident(&model.provider.name, &model.model),
        }),
    }
}

/// The candidates in the policy's order: out-of-range and repeated indices
/// are ignored, and an index left out drops its candidate.
pub fn apply<T: Clone>(order: &[u32], candidates: &[T]) -> Vec<T> {
    let mut taken = vec![false; candidates.len()];
    order
        .iter()
        .filter_map(|&i| {
            let i = i as usize;
            let fresh = i < candidates.len() && !taken[i];
            if fresh {
                taken[i] = true;
            }
            fresh.then(|| candidates[i].clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn apply_ignores_nonsense_and_drops_what_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            "name: p\nflag: P\nadapter: openai\nbase_url: http://x/v1\ntier: free\nmodels:\n  - { alias: a, model: a, mode: chat }\n  - { alias: b, model: b, mode: chat }\n  - { alias: c, model: c, mode: chat }\n",
        )
        .unwrap();
        let catalog = crate::config::Catalog::load(
            dir.path(),
            &crate::config::env::Env::from_pairs(&[("P", "1")]),
            &|_| true,
        )
        .unwrap();
        let models: Vec<_> = catalog.models.clone();
        let aliases =
            |list: Vec<Arc<Model>>| list.iter().map(|m| m.alias.clone()).collect::<Vec<_>>();
        assert_eq!(aliases(apply(&[2, 0, 2, 9], &models)), ["c", "a"]);
        assert_eq!(aliases(apply(&[], &models)), Vec::<String>::new());
    }
}
