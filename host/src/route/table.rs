//! The route table: every enabled alias resolved, once per generation, to
//! what serving it needs — its candidates in chain order, each with its
//! ledger plan and adapter, and the policy that orders them.
//!
//! Built when a catalogue is loaded (at start and at each reload), so a
//! request makes one lookup for its alias and none for the chain, the plans,
//! the policy or the adapters. A generation never changes its table; a
//! reload builds a new one beside it.

use crate::config::{Catalog, Mode, Model};
use crate::ledger::Ledger;
use crate::ledger::plan::Plan;
use crate::metrics::meters::Served;
use crate::plugins::{LoadedPlugin, PluginRuntime};
use std::collections::HashMap;
use std::sync::Arc;

/// One candidate of a route.
pub struct Hop {
    pub model: Arc<Model>,
    pub plan: Arc<Plan>,
    /// `None` when the provider's adapter is not loaded; the attempt then
    /// fails over with that reason (the catalogue check makes it rare).
    pub adapter: Option<Arc<LoadedPlugin>>,
    /// The counters its answers to this route's requests add to.
    pub meters: Arc<Served>,
}

/// How one alias is served.
pub struct Route {
    /// The alias, as the metrics label it.
    pub name: Arc<str>,
    /// The alias's own mode; every hop serves it (the catalogue checks).
    pub mode: Mode,
    /// The alias itself, then its fallback chain; enabled models only.
    pub hops: Vec<Hop>,
    /// The routing policy, when there is more than one hop to order.
    pub policy: Option<Arc<LoadedPlugin>>,
}

/// Every enabled alias's route.
#[derive(Default)]
pub struct Routes(HashMap<String, Arc<Route>>);

impl Routes {
    pub fn build(catalog: &Catalog, plugins: &PluginRuntime, ledger: &Ledger) -> Self {
        let mut plans: HashMap<String, Arc<Plan>> = HashMap::new();
        let mut hop = |head: &str, model: &Arc<Model>| Hop {
            meters: Arc::new(Served::new(head, &model.alias)),
            model: model.clone(),
            plan: plans
                .entry(model.alias.clone())
                .or_insert_with(|| ledger.plan(model))
                .clone(),
            adapter: plugins.adapter(&model.provider.adapter).cloned(),
        };
        let mut routes = HashMap::new();
        for head in catalog.models.iter().filter(|m| m.enabled()) {
            let hops: Vec<Hop> = catalog
                .candidates(&head.alias)
                .iter()
                .map(|model| hop(&head.alias, model))
                .collect();
            let policy = (hops.len() > 1)
                .then(|| plugins.policy(catalog.policies.for_alias(&head.alias)))
                .flatten()
                .cloned();
            let route = Route {
                name: head.alias.as_str().into(),
                mode: head.mode,
                hops,
                policy,
            };
            routes.insert(head.alias.clone(), Arc::new(route));
        }
        Routes(routes)
    }

    /// The route for `alias`; `None` when it is unknown or disabled.
    pub fn get(&self, alias: &str) -> Option<&Arc<Route>> {
        self.0.get(alias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::env::Env;
    use crate::ledger::Backend;

    const FREE: &str = "name: free\nflag: FREE\nadapter: openai\nbase_url: http://free/v1\ntier: free\nmodels:\n  - { alias: free-chat, model: a, mode: chat }\n  - { alias: free-embed, model: e, mode: embedding }\n";
    const PAID: &str = "name: paid\nflag: PAID\nadapter: openai\nbase_url: http://paid/v1\napi_key: ${PAID_KEY}\ntier: paid\nmodels:\n  - { alias: paid-chat, model: b, mode: chat }\n";
    const LOCAL: &str = "name: local\nflag: LOCAL\nadapter: ollama\nbase_url: http://local/v1\ntier: local\nmodels:\n  - { alias: local-chat, model: c, mode: chat }\n";
    const CHAINS: &str = "free-chat: [paid-chat, local-chat]\nlocal-chat: [free-chat]\n";

    /// A table over three providers; `env` says which are enabled.
    async fn table(env: &[(&str, &str)]) -> Routes {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("free.yaml", FREE),
            ("paid.yaml", PAID),
            ("local.yaml", LOCAL),
            ("fallbacks.yaml", CHAINS),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let catalog = Catalog::load(dir.path(), &Env::from_pairs(env), &|_| true).unwrap();
        let plugins = PluginRuntime::load(Default::default(), None, None)
            .await
            .unwrap();
        let ledger = Ledger::new(Backend::Memory, Arc::new(ManualClock::at(0))).unwrap();
        Routes::build(&catalog, &plugins, &ledger)
    }

    fn aliases(route: &Route) -> Vec<&str> {
        route.hops.iter().map(|h| h.model.alias.as_str()).collect()
    }

    #[tokio::test]
    async fn a_route_is_the_alias_then_its_chain_in_order() {
        let routes = table(&[
            ("FREE", "1"),
            ("PAID", "1"),
            ("PAID_KEY", "k"),
            ("LOCAL", "1"),
        ])
        .await;
        let route = routes.get("free-chat").unwrap();
        assert_eq!(aliases(route), ["free-chat", "paid-chat", "local-chat"]);
        assert_eq!(route.mode, Mode::Chat);
        assert_eq!(&*route.policy.as_ref().unwrap().name, "free-first");
        assert!(route.hops.iter().all(|h| h.adapter.is_some()));
        // Each alias's plan is made once and shared by every route it is in.
        let local = &routes.get("local-chat").unwrap().hops[1];
        assert!(Arc::ptr_eq(&local.plan, &route.hops[0].plan));
    }

    #[tokio::test]
    async fn disabled_candidates_drop_out_and_a_lone_hop_has_no_policy() {
        // paid-chat has its flag but no key: disabled, so skipped in the chain.
        let routes = table(&[("FREE", "1"), ("PAID", "1"), ("LOCAL", "1")]).await;
        let route = routes.get("free-chat").unwrap();
        assert_eq!(aliases(route), ["free-chat", "local-chat"]);
        let routes = table(&[("FREE", "1")]).await;
        let route = routes.get("free-chat").unwrap();
        assert_eq!(aliases(route), ["free-chat"]);
        assert!(route.policy.is_none(), "one candidate has nothing to order");
        assert!(routes.get("local-chat").is_none(), "disabled alias");
        assert!(routes.get("paid-chat").is_none());
        assert!(routes.get("nope").is_none());
        assert_eq!(routes.get("free-embed").unwrap().mode, Mode::Embedding);
    }
}
