//! The state every request, the admin views and the reloader share: the
//! generation in service, swapped whole by a reload, and what the reloads
//! found. It sits above the router and below the front door, so
//! `http` reads it and `reload` writes it without importing each other.

pub mod reload;

use crate::config::Secret;
use crate::keys::Keys;
use crate::route::Gateway;
use arc_swap::ArcSwap;
use bytes::Bytes;
use reload::ReloadStatus;
use std::sync::{Arc, Mutex};

/// One generation of catalogue and plugins. A request takes the current
/// one when it starts and keeps it to the end, so a reload never changes
/// the ground under a request in flight.
pub struct Generation {
    pub gateway: Gateway,
    /// `/v1/models`, rendered once per generation.
    pub models_json: Bytes,
    /// `/v1/models` in Anthropic's shape, for clients that send
    /// `anthropic-version`: the chat models only, as Anthropic lists.
    pub models_anthropic: Bytes,
}

impl Generation {
    fn new(gateway: Gateway) -> Self {
        let models_json = models_body(&gateway);
        let models_anthropic = anthropic_models_body(&gateway);
        Generation {
            gateway,
            models_json,
            models_anthropic,
        }
    }
}

pub struct AppState {
    current: ArcSwap<Generation>,
    /// The operator's key: full access, and the only key `/admin` and
    /// `/metrics` take.
    pub master_key: Option<Secret>,
    /// The gateway keys handed out to people and agents.
    pub keys: Keys,
    /// What the last reloads found wrong, for `/admin/plugins`.
    pub reloads: Mutex<ReloadStatus>,
}

impl AppState {
    pub fn new(gateway: Gateway, master_key: Option<Secret>, keys: Keys) -> Self {
        let reloads = ReloadStatus::started(&gateway);
        AppState {
            current: ArcSwap::from_pointee(Generation::new(gateway)),
            master_key,
            keys,
            reloads: Mutex::new(reloads),
        }
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// Puts a new generation in service; requests in flight finish on theirs.
    pub fn install(&self, gateway: Gateway) {
        self.current.store(Arc::new(Generation::new(gateway)));
    }
}

/// The model list a generation serves, as `/v1/models` answers it.
fn models_body(gateway: &Gateway) -> Bytes {
    models_body_for(gateway, &|_| true)
}

/// The model list of the aliases `allowed` lets through (a gateway key's
/// own list, made when the key asks).
pub fn models_body_for(gateway: &Gateway, allowed: &dyn Fn(&str) -> bool) -> Bytes {
    let data: Vec<serde_json::Value> = gateway
        .catalog
        .models
        .iter()
        .filter(|m| m.enabled() && allowed(&m.alias))
        .map(|m| {
            serde_json::json!({
                "id": m.alias,
                "object": "model",
                "created": 0,
                "owned_by": m.provider.name,
                "mode": m.mode.as_str(),
                "tier": m.tier.as_str(),
            })
        })
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

/// Anthropic's model list: `type`, `id`, `display_name`, `created_at`, and
/// one page (`has_more` false).
fn anthropic_models_body(gateway: &Gateway) -> Bytes {
    let data: Vec<serde_json::Value> = gateway
        .catalog
        .models
        .iter()
        .filter(|m| m.enabled() && m.mode == crate::config::Mode::Chat)
        .map(|m| {
            serde_json::json!({
                "type": "model",
                "id": m.alias,
                "display_name": m.alias,
                "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    Bytes::from(
        serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
            .to_string(),
    )
}
