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
                let (order,) = policy
                    .calls
                    .call(order, store, (request, candidates))
                    .await?;
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
                let (next,) = policy
                    .calls
                    .call(after, store, (request, failed, attempts_left))
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
            Ok(value) => {
                policy.calls_ok.inc();
                Ok(value)
            }
            Err(e) => Err(PluginError::from_trap(
                &policy.name,
                e,
                store.data().last_words(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::calls::Calls;
    use super::super::engine::Limits;
    use super::*;
    use crate::plugins::bindings::Mode;
    use crate::plugins::bindings::policy::Tier;

    /// The fixture plugins in a plugins folder.
    async fn fixtures(names: &[&str]) -> (tempfile::TempDir, PluginRuntime) {
        let dir = tempfile::tempdir().unwrap();
        let built = crate::plugins::bundled::fixtures();
        for name in names {
            let file = format!("{name}.wasm");
            std::fs::copy(built.join(&file), dir.path().join(&file)).unwrap();
        }
        let plugins = PluginRuntime::load(Limits::default(), Some(dir.path()), None)
            .await
            .unwrap();
        assert!(plugins.failures().is_empty(), "{:?}", plugins.failures());
        (dir, plugins)
    }

    fn shape(alias: &str) -> RequestShape {
        RequestShape {
            mode: Mode::Chat,
            alias: alias.into(),
            estimated_tokens: 10,
            stream: false,
        }
    }

    fn candidate(alias: &str) -> Candidate {
        Candidate {
            alias: alias.into(),
            provider: "p".into(),
            tier: Tier::Free,
            local: false,
            headroom: Vec::new(),
            cooldown_ms: 0,
            error_rate: 0.0,
            latency_ms: 0,
            gpu: None,
        }
    }

    #[tokio::test]
    async fn a_no_std_plugin_is_called_directly_and_its_panic_message_is_reported() {
        let (_dir, plugins) = fixtures(&["faulty-policy", "faulty"]).await;
        let policy = plugins.policy("faulty-policy").unwrap().clone();
        // Built without std, it imports no WASI; the std fixture does.
        assert_eq!(policy.calls, Calls::Direct);
        assert_eq!(plugins.adapter("faulty").unwrap().calls, Calls::OnFiber);

        let candidates = [candidate("a"), candidate("b")];
        let order = plugins.order(&policy, &shape("plain"), &candidates).await;
        assert_eq!(order.unwrap(), [1, 0], "it reverses the chain");

        let error = plugins
            .order(&policy, &shape("trap"), &candidates)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("trapped"), "{error}");
        assert!(error.contains("faulty policy: deliberate trap"), "{error}");

        // A direct call still has a CPU deadline.
        let error = plugins
            .order(&policy, &shape("spin"), &candidates)
            .await
            .unwrap_err();
        assert!(matches!(error, PluginError::Deadline { .. }), "{error}");
    }
}
