//! Routing policies: implement [`Policy`] and call
//! [`export_policy!`](crate::export_policy).
//!
//! ```ignore
//! use tollgate_sdk::policy::prelude::*;
//!
//! /// Tries candidates in reverse chain order.
//! struct Reverse;
//!
//! impl Policy for Reverse {
//!     fn info() -> PluginInfo { policy_info("reverse") }
//!     fn order(_: &RequestShape, candidates: &[Candidate]) -> Vec<u32> {
//!         (0..candidates.len() as u32).rev().collect()
//!     }
//! }
//!
//! export_policy!(Reverse);
//! ```

use crate::alloc_prelude::*;
use core::marker::PhantomData;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy-plugin",
        pub_export_macro: true,
        export_macro_name: "export_policy_raw",
        default_bindings_module: "tollgate_sdk::policy::bindings",
    });
}

/// The WIT types a policy sees, under their contract names.
pub mod types {
    pub use super::bindings::tollgate::plugin::policy_types::*;
    pub use super::bindings::tollgate::plugin::types::{FailureKind, Mode, PluginInfo};
}

/// Everything a typical policy uses.
pub mod prelude {
    pub use super::types::*;
    pub use super::{Policy, headroom_fraction, policy_info, tier_rank};
    pub use crate::alloc_prelude::*;
    pub use crate::{export_policy, policy_info};
}

use types::{Candidate, FailedAttempt, NextStep, PluginInfo, RequestShape, Tier};

/// A routing policy. Methods take no `self`: every call gets a fresh
/// instance, so there is no state to keep between requests.
pub trait Policy: 'static {
    fn info() -> PluginInfo;

    /// Indices into `candidates` (which come in chain order), in the order
    /// to try them; leave one out to drop it.
    fn order(request: &RequestShape, candidates: &[Candidate]) -> Vec<u32>;

    /// After a failed attempt: defaults to trying the next candidate.
    fn after_failure(
        _request: &RequestShape,
        _failed: &FailedAttempt,
        _attempts_left: u32,
    ) -> NextStep {
        NextStep::GoOn
    }
}

/// [`PluginInfo`] for a policy, with the SDK's version (the bundled
/// policies share it); a policy of your own wants [`policy_info!`](crate::policy_info),
/// which gives your crate's version.
pub fn policy_info(name: &str) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        modes: Vec::new(),
    }
}

/// [`PluginInfo`] for a policy, with the version in the calling crate's
/// `Cargo.toml`: `policy_info!("cheapest")`.
#[macro_export]
macro_rules! policy_info {
    ($name:expr) => {
        $crate::policy::types::PluginInfo {
            name: $crate::alloc_prelude::ToOwned::to_owned($name),
            version: $crate::alloc_prelude::ToOwned::to_owned(env!("CARGO_PKG_VERSION")),
            modes: $crate::alloc_prelude::Vec::new(),
        }
    };
}

/// Free before subscription before paid before local.
pub fn tier_rank(tier: Tier) -> u8 {
    match tier {
        Tier::Free => 0,
        Tier::Subscription => 1,
        Tier::Paid => 2,
        Tier::Local => 3,
    }
}

/// The share of its tightest limit a candidate has left, 0 to 1; 1 when it
/// has no limits, 0 while it cools down.
pub fn headroom_fraction(candidate: &Candidate) -> f64 {
    if candidate.cooldown_ms > 0 {
        return 0.0;
    }
    candidate
        .headroom
        .iter()
        .filter(|h| h.limit > 0)
        .map(|h| h.remaining as f64 / h.limit as f64)
        .fold(1.0, f64::min)
}

/// Bridges a [`Policy`] to the generated WIT exports. Used by [`export_policy!`](crate::export_policy).
#[doc(hidden)]
pub struct Export<P>(PhantomData<P>);

impl<P: Policy> bindings::exports::tollgate::plugin::policy::Guest for Export<P> {
    fn info() -> PluginInfo {
        P::info()
    }

    fn order(request: RequestShape, candidates: Vec<Candidate>) -> Vec<u32> {
        P::order(&request, &candidates)
    }

    fn after_failure(request: RequestShape, failed: FailedAttempt, attempts_left: u32) -> NextStep {
        P::after_failure(&request, &failed, attempts_left)
    }
}

/// Exports a [`Policy`] as this component's implementation of the
/// `tollgate:plugin/policy` interface. Call it once, at the crate root.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_family = "wasm")]
        type __TollgatePolicyExport = $crate::policy::Export<$policy>;
        // As for adapters: only a component exports the contract.
        #[cfg(target_family = "wasm")]
        $crate::policy::bindings::export_policy_raw!(
            __TollgatePolicyExport with_types_in $crate::policy::bindings
        );
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __tollgate_policy_info() -> $crate::policy::types::PluginInfo {
            <$policy as $crate::policy::Policy>::info()
        }
    };
}
