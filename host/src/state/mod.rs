//! The state every request, the admin views and the reloader share: the
//! generation in service, swapped whole by a reload, and what the reloads
//! found. It sits above the router and below the front door, so
//! `http` reads it and `reload` writes it without importing each other.

pub mod reload;

use crate::config::Secret;
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
}

impl Generation {
    fn new(gateway: Gateway) -> Self {
        let models_json = models_body(&gateway);
        Generation {
            gateway,
            models_json,
        }
    }
}

pub struct AppState {
    current: ArcSwap<Generation>,
    pub master_key: Option<Secret>,
    /// What the last reloads found wrong, for `/admin/plugins`.
    pub reloads: Mutex<ReloadStatus>,
}

impl AppState {
    pub fn new(gateway: Gateway, master_key: Option<Secret>) -> Self {
        let reloads = ReloadStatus::started(&gateway);
        AppState {
            current: ArcSwap::from_pointee(Generation::new(gateway)),
            master_key,
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
    let data: Vec<serde_json::Value> = gateway
        .catalog
        .models
        .iter()
        .filter(|m| m.enabled())
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
