//! Calling routing-policy plugins: a fresh sandboxed instance per call, under
//! the same CPU deadline, memory limit and instance slots as adapters.

use super::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use super::{Kind, LoadedPlugin, PluginError, PluginRuntime};
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
        &self,
        policy: &LoadedPlugin,
        call: impl AsyncFnOnce(
            &super::bindings::policy::PolicyPlugin,
            &mut wasmtime::Store<super::sandbox::Sandbox>,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let Kind::Policy(pre) = &policy.kind else {
            return Err(PluginError::instantiate(&policy.name, "it is not a policy"));
        };
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the instance semaphore is never closed");
        let mut store = self.store(&policy.name);
        let bindings = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PluginError::instantiate(&policy.name, e))?;
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
