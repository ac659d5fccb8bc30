//! Calling routing-policy plugins: a fresh sandboxed instance per call, under
//! the same CPU deadline, memory limit and instance slots as adapters.

use super::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use super::exports::PolicyExports;
use super::sandbox::Sandbox;
use super::spares::Ready;
use super::{Kind, LoadedPlugin, PluginError, PluginRuntime};
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::Instance;

impl PluginRuntime {
    /// The policy's order for `candidates`: indices, the first to try first.
    pub async fn order(
        &self,
        policy: &Arc<LoadedPlugin>,
        request: &RequestShape,
        candidates: &[Candidate],
    ) -> Result<Vec<u32>, PluginError> {
        self.host
            .call_policy(policy, async |exports, store, instance| {
                let order = exports.order(store, instance)?;
                let (order,) = order.call_async(store, (request, candidates)).await?;
                Ok(order)
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
            .call_policy(policy, async |exports, store, instance| {
                let after = exports.after_failure(store, instance)?;
                let (next,) = after
                    .call_async(store, (request, failed, attempts_left))
                    .await?;
                Ok(next)
            })
            .await
    }
}

impl super::PluginHost {
    pub(super) async fn call_policy<T>(
        self: &Arc<Self>,
        policy: &Arc<LoadedPlugin>,
        call: impl AsyncFnOnce(&PolicyExports, &mut Store<Sandbox>, &Instance) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let Kind::Policy(exports) = &policy.kind else {
            return Err(PluginError::instantiate(&policy.name, "it is not a policy"));
        };
        let Ready {
            mut store,
            instance,
            slot: _slot,
        } = self.ready(policy).await?;
        // A spare may have waited: the deadline counts from this call.
        store.set_epoch_deadline(self.limits.deadline_ticks());
        match call(exports, &mut store, &instance).await {
            Ok(value) => Ok(value),
            Err(e) => Err(PluginError::from_trap(
                &policy.name,
                e,
                store.data().last_words(),
            )),
        }
    }
}
