//! `most-headroom`: spreads load across providers by what their quotas have
//! left. Within each tier (free first, as always), the candidate whose
//! tightest limit has the largest share remaining goes first; a candidate
//! without limits counts as untouched. Ties keep the chain's order.

#![cfg_attr(not(test), no_std)]

use tollgate_sdk::policy::prelude::*;

struct MostHeadroom;

impl Policy for MostHeadroom {
    fn info() -> PluginInfo {
        policy_info("most-headroom")
    }

    fn order(_: &RequestShape, candidates: &[Candidate]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&candidates[a as usize], &candidates[b as usize]);
            tier_rank(a.tier)
                .cmp(&tier_rank(b.tier))
                .then(headroom_fraction(b).total_cmp(&headroom_fraction(a)))
        });
        order
    }
}

export_policy!(MostHeadroom);
