//! `free-first`, the default routing policy: the fallback chain's order,
//! with every free candidate before any subscription, paid or local one.
//!
//! Candidates without headroom or cooling down stay in place: the host's
//! ledger skips them without a network call and says why, so a client whose
//! request fails learns which limit stopped each one.

#![cfg_attr(not(test), no_std)]

use tollgate_sdk::policy::prelude::*;

struct FreeFirst;

impl Policy for FreeFirst {
    fn info() -> PluginInfo {
        policy_info("free-first")
    }

    fn order(_: &RequestShape, candidates: &[Candidate]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
        // Stable: the chain's order within each tier.
        order.sort_by_key(|&i| tier_rank(candidates[i as usize].tier));
        order
    }
}

export_policy!(FreeFirst);
