//! Instances made ahead of need.
//!
//! Instantiating from the pool costs little on a warm machine but tens of
//! microseconds on a cold one (a request after a quiet moment), and that is
//! time a client waits for its first byte. So each plugin keeps a small stock
//! of ready instances: a request takes one, and a background task makes the
//! replacement once the request has it. When the stock is empty (a burst),
//! the request instantiates for itself, as before.
//!
//! Isolation is unchanged: a spare has only been instantiated, never called,
//! and every instance still serves one attempt (or one policy call) and is
//! dropped after it. Spares take instance slots only when one is free
//! (`try_acquire`), so they never make a request wait; the stock is filled
//! after a plugin's first use, so `tollgate check` and unused plugins cost
//! nothing.

use super::bindings::AdapterPlugin;
use super::bindings::policy::PolicyPlugin;
use super::sandbox::Sandbox;
use super::{LoadedPlugin, PluginHost};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use wasmtime::Store;

/// The typed exports of one instance.
pub(super) enum Bindings {
    Adapter(AdapterPlugin),
    Policy(PolicyPlugin),
}

/// An instantiated plugin with the slot it occupies.
pub(super) struct Ready {
    pub store: Store<Sandbox>,
    pub bindings: Bindings,
    pub slot: OwnedSemaphorePermit,
}

/// One plugin's stock of ready instances.
pub(super) struct Spares {
    ready: Mutex<Vec<Ready>>,
    wanted: usize,
    refill: Notify,
    closed: AtomicBool,
}

impl Spares {
    pub fn new(wanted: usize) -> Arc<Self> {
        Arc::new(Spares {
            ready: Mutex::new(Vec::with_capacity(wanted)),
            wanted,
            refill: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// A ready instance, if the stock has one; either way the stock is
    /// topped up in the background.
    pub fn take(&self) -> Option<Ready> {
        if self.wanted == 0 {
            return None;
        }
        let ready = self.lock().pop();
        self.refill.notify_one();
        ready
    }

    /// Drops the stock and ends the refill task (the plugin was unloaded).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.lock().clear();
        self.refill.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Ready>> {
        // A panic while holding the lock leaves a valid Vec.
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn missing(&self) -> usize {
        self.wanted.saturating_sub(self.lock().len())
    }
}

/// Keeps `plugin`'s stock full until the plugin is dropped. Holds the plugin
/// only weakly, so an unloaded plugin goes away with its last request.
pub(super) fn start_refill(host: Arc<PluginHost>, plugin: Weak<LoadedPlugin>, spares: Arc<Spares>) {
    if spares.wanted == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            spares.refill.notified().await;
            if spares.closed.load(Ordering::Acquire) {
                return;
            }
            let Some(plugin) = plugin.upgrade() else {
                return;
            };
            for _ in 0..spares.missing() {
                let Ok(slot) = host.slots.clone().try_acquire_owned() else {
                    break;
                };
                match host.fresh(&plugin, slot).await {
                    Ok(ready) if !spares.closed.load(Ordering::Acquire) => {
                        spares.lock().push(ready)
                    }
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(plugin = %plugin.name, "could not make a spare instance: {e}");
                        break;
                    }
                }
            }
        }
    });
}
