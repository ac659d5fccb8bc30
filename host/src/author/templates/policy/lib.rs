//! {{name}}: a Tollgate routing policy. Free candidates stay first, as with
//! the gateway's default; within a tier the candidate that has answered
//! fastest lately goes first, and one failing most of its recent attempts
//! goes to the back.
//!
//! `tollgate plugin test` checks it against the cases in `tests/`.

use tollgate_sdk::policy::prelude::*;

struct {{Type}};

impl Policy for {{Type}} {
    fn info() -> PluginInfo {
        policy_info!("{{name}}")
    }

    /// Candidates come in the fallback chain's order; the answer lists their
    /// indices in the order to try them (leave one out to skip it). The
    /// gateway still skips any whose quota is spent.
    fn order(_request: &RequestShape, candidates: &[Candidate]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
        // Stable: ties keep the chain's order. A latency of 0 means not yet
        // measured, so an untried candidate gets its turn.
        order.sort_by_key(|&i| {
            let candidate = &candidates[i as usize];
            let failing = candidate.error_rate > 0.5;
            (failing, tier_rank(candidate.tier), candidate.latency_ms)
        });
        order
    }

    /// After a failed attempt, with others left to try.
    fn after_failure(_request: &RequestShape, failed: &FailedAttempt, _left: u32) -> NextStep {
        match failed.kind {
            // An upstream starting up or overloaded: a breath before the next.
            FailureKind::Unavailable => NextStep::Wait(200),
            _ => NextStep::GoOn,
        }
    }
}

export_policy!({{Type}});
