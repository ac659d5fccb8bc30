//! Instances made ahead of need.
//!
//! Instantiating from the pool costs little on a warm machine but tens of
//! microseconds on a cold one (a request after a quiet moment), and that is
//! time a client waits for its first byte. So each plugin keeps a small stock
//! of ready instances: a request takes one, and a task on the same serving
//! lane makes the replacement while the request waits for its provider. When
//! the stock is empty (a burst), the request instantiates for itself.
//!
//! The refill runs on the lane that took the spare, never on another thread:
//! waking a thread elsewhere for every request cost more than the spare
//! saved (`just bench`: 20,400 against 22,400 requests/s at concurrency 32).
//! Even so, with lanes the stock no longer pays for itself (concurrency 1:
//! 4,218 requests/s with two spares, 4,670 with none), so it is off unless
//! `TOLLGATE_SPARE_INSTANCES` asks for it.
//!
//! Isolation is unchanged: a spare has only been instantiated, never called,
//! and every instance still serves one attempt (or one policy call) and is
//! dropped after it. Spares take instance slots only when one is free
//! (`try_acquire`), so they never make a request wait; the stock is filled
//! after a plugin's first use, so `tollgate check` and unused plugins cost
//! nothing.

use super::sandbox::Sandbox;
use super::{LoadedPlugin, PluginHost};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime::component::Instance;

/// An instantiated plugin with the slot it occupies.
pub(super) struct Ready {
    pub store: Store<Sandbox>,
    pub instance: Instance,
    pub slot: OwnedSemaphorePermit,
}

/// One plugin's stock of ready instances.
pub(super) struct Spares {
    ready: Mutex<Vec<Ready>>,
    wanted: usize,
    /// A refill is under way (one at a time per plugin).
    refilling: AtomicBool,
}

impl Spares {
    pub fn new(wanted: usize) -> Self {
        Spares {
            ready: Mutex::new(Vec::with_capacity(wanted)),
            wanted,
            refilling: AtomicBool::new(false),
        }
    }

    /// A ready instance, if the stock has one.
    pub fn take(&self) -> Option<Ready> {
        if self.wanted == 0 {
            return None;
        }
        self.lock().pop()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Ready>> {
        // A panic while holding the lock leaves a valid Vec.
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn missing(&self) -> usize {
        self.wanted.saturating_sub(self.lock().len())
    }
}

/// Tops `plugin`'s stock up in a task on the calling runtime, unless one is
/// already at it. Spares take instance slots only when one is free. The task
/// holds the plugin, so an unloaded plugin (and its stock, and the slots the
/// stock holds) goes once the task ends.
pub(super) fn refill(host: &Arc<PluginHost>, plugin: &Arc<LoadedPlugin>) {
    if plugin.spares.wanted == 0 || plugin.spares.refilling.swap(true, Ordering::AcqRel) {
        return;
    }
    let (host, plugin) = (host.clone(), plugin.clone());
    tokio::spawn(async move {
        let spares = &plugin.spares;
        for _ in 0..spares.missing() {
            let Some(slot) = host.try_slot() else {
                break;
            };
            match host
                .fresh(&plugin.name, &plugin.pre, plugin.calls, slot)
                .await
            {
                Ok(ready) => spares.lock().push(ready),
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, "could not make a spare instance: {e}");
                    break;
                }
            }
        }
        spares.refilling.store(false, Ordering::Release);
    });
}
