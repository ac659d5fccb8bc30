//! Calling routing-policy plugins: a fresh sandboxed instance per call, under
//! the same CPU deadline, memory limit and instance slots as adapters.

use super::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use super::spares::{Bindings, Ready};
use super::{LoadedPlugin, PluginError, PluginRuntime};
use std::sync::Arc;

impl PluginRuntime {
    /// The policy's order for `candidates`: indices, the first to try first.
    pub async fn order(
        &self,
        policy: &Arc<LoadedPlugin>,
        request: &RequestShape,
        candidates: &[Candidate],
    ) -> Result<Vec<u32>, PluginError> {
        self.host
            .call_policy(policy, async |bindings, store| {
                bindings
                    .tollgate_plugin_policy()
                    .call_order(store, request, candidates)
                    .await
            })
            .await
    }

    /// What the policy wants after a failed attempt.
    pub async fn after_failure(
        &self,
        policy: &Arc<LoadedPlugin>,
        request: &RequestShape,
        failed: &FailedAttempt,
        attempts_left: u32,
    ) -> Result<NextStep, PluginError> {
        self.host
            .call_policy(policy, async |bindings, store| {
                bindings
                    .tollgate_plugin_policy()
                    .call_after_failure(store, request, failed, attempts_left)
                    .await
            })
            .await
    }
}

impl super::PluginHost {
    pub(super) async fn call_policy<T>(
        self: &Arc<Self>,
        policy: &Arc<LoadedPlugin>,
        call: impl AsyncFnOnce(
            &super::bindings::policy::PolicyPlugin,
            &mut wasmtime::Store<super::sandbox::Sandbox>,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let Ready {
            mut store,
            bindings,
            slot: _slot,
        } = self.ready(policy).await?;
        let Bindings::Policy(bindings) = bindings else {
            return Err(PluginError::instantiate(&policy.name, "it is not a policy"));
        };
        // A spare may have waited: the deadline counts from this call.
        store.set_epoch_deadline(self.limits.deadline_ticks());
        match call(&bindings, &mut store).await {
            Ok(value) => Ok(value),
            Err(e) => Err(PluginError::from_trap(
                &policy.name,
                e,
                store.data().last_words(),
            )),
        }
    }
}
