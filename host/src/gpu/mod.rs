//! Sharing one GPU between local model servers (Ollama, a speech server, an
//! image server) without running out of memory.
//!
//! Each managed local backend holds a lease sized by the VRAM estimates of
//! the models it has resident; backends stay resident together while they
//! fit. A request for a local model takes a job slot ([`jobs`]) and then
//! the lease, on every hop of a fallback chain,
//! and gives both back when its response or stream ends, however it ends.
//! When a model does not fit, idle leases are unloaded through their
//! adapters, least recently used first; a lease in use is never unloaded,
//! and the request waits in line until its deadline, when the attempt is
//! skipped and the chain moves on. Idle backends are unloaded after their
//! TTL.
//!
//! The table outlives configuration reloads: it is the state of the card,
//! not of the catalogue.

pub mod device;
pub mod jobs;
pub mod table;

use device::{Device, DeviceReport};
use jobs::{Job, JobSlots};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::{Ask, Decision, Eviction, Table, Unload};
use tokio::sync::Notify;

/// Runs a backend's unload calls (the router does, through the backend's
/// adapter plugin).
pub trait Control: Sync {
    fn unload(&self, eviction: &Eviction) -> impl Future<Output = Unload> + Send;
}

/// Why an attempt on a local model could not start.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("waited {waited:?} for {what}")]
    Timeout {
        waited: Duration,
        what: &'static str,
    },
    #[error("needs {vram_mb} MB of VRAM but the card has {capacity_mb} MB")]
    TooLarge { vram_mb: u64, capacity_mb: u64 },
}

pub struct Leases {
    device: Device,
    table: Mutex<Table>,
    /// Woken whenever memory or a place in line may have come free.
    changed: Notify,
    /// Each local backend's job slots, by backend.
    slots: Mutex<HashMap<String, Arc<JobSlots>>>,
}

/// What an attempt holds on a local backend; dropping it gives it back.
pub struct Granted {
    pub lease: LeaseGuard,
    /// The backend must load the model before the job.
    pub load: bool,
    _job: Job,
}

/// One holder of a backend's lease.
pub struct LeaseGuard {
    leases: Arc<Leases>,
    backend: String,
    model: String,
}

impl LeaseGuard {
    /// The backend failed to load the model: it is not resident.
    pub fn forget(&self) {
        self.leases.lock().forget(&self.backend, &self.model);
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.leases.lock().release(&self.backend, Instant::now());
        self.leases.changed.notify_waiters();
    }
}

/// A place in line; leaving it (granted, timed out, or the client gone)
/// lets the next request go.
struct InLine<'a> {
    leases: &'a Leases,
    ticket: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.leases.lock().leave(self.ticket);
        self.leases.changed.notify_waiters();
    }
}

/// An unload in progress. Should the request driving it go away midway,
/// the lease is treated as a failed unload: still resident and counted.
struct Unloading<'a> {
    leases: &'a Leases,
    backend: String,
    outcome: Option<Unload>,
}

impl Drop for Unloading<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Unload::Failed);
        self.leases
            .lock()
            .unloaded(&self.backend, outcome, Instant::now());
        self.leases.changed.notify_waiters();
    }
}

impl Leases {
    pub fn new(device: Device) -> Arc<Self> {
        let table = Table::new(device.total_mb);
        Arc::new(Leases {
            device,
            table: Mutex::new(table),
            changed: Notify::new(),
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `backend` has `model` resident now (for routing policies).
    pub fn resident(&self, backend: &str, model: &str) -> bool {
        self.lock()
            .leases()
            .get(backend)
            .is_some_and(|l| l.models.contains_key(model))
    }

    /// Takes a job slot (`concurrency` of them, or as many as the backend
    /// takes until it answers busy) and the lease for
    /// `ask`, unloading idle backends to make room, waiting no later than
    /// `deadline`.
    pub async fn acquire<C: Control>(
        self: &Arc<Self>,
        ask: Ask,
        concurrency: Option<u32>,
        deadline: tokio::time::Instant,
        control: &C,
    ) -> Result<Granted, Refusal> {
        let started = Instant::now();
        let job = self
            .job(&ask.backend, concurrency, deadline, started)
            .await?;
        let ticket = self.lock().ticket();
        let line = InLine {
            leases: self,
            ticket,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let decision = self.lock().admit(ticket, &ask, Instant::now());
            match decision {
                Decision::Granted { load, .. } => {
                    drop(line);
                    observe_wait(&ask.backend, started);
                    return Ok(Granted {
                        lease: LeaseGuard {
                            leases: self.clone(),
                            backend: ask.backend,
                            model: ask.model,
                        },
                        load,
                        _job: job,
                    });
                }
                Decision::Evict(evictions) => {
                    for eviction in &evictions {
                        self.unload(eviction, control, "making room on the GPU")
                            .await;
                    }
                }
                Decision::Wait => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        self.lock().counters.timeouts += 1;
                        observe_wait(&ask.backend, started);
                        return Err(Refusal::Timeout {
                            waited: started.elapsed(),
                            what: "GPU memory",
                        });
                    }
                }
                Decision::TooLarge { capacity_mb } => {
                    return Err(Refusal::TooLarge {
                        vram_mb: ask.vram_mb,
                        capacity_mb,
                    });
                }
            }
        }
    }

    /// A job slot of `backend`, in arrival order.
    async fn job(
        &self,
        backend: &str,
        concurrency: Option<u32>,
        deadline: tokio::time::Instant,
        started: Instant,
    ) -> Result<Job, Refusal> {
        let slots = self.slots_of(backend, concurrency);
        match slots.take(deadline).await {
            Some(job) => Ok(job),
            None => {
                self.lock().counters.timeouts += 1;
                Err(Refusal::Timeout {
                    waited: started.elapsed(),
                    what: "a job slot",
                })
            }
        }
    }

    fn slots_of(&self, backend: &str, concurrency: Option<u32>) -> Arc<JobSlots> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(backend.to_owned())
            .or_insert_with(|| JobSlots::new(concurrency))
            .clone()
    }

    /// `backend` answered busy to a job that still holds its slot: whether
    /// the job should wait for a slot and be sent again ([`JobSlots::learn_busy`]).
    pub fn learn_busy(&self, backend: &str) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slots) = slots.get(backend) else {
            return false;
        };
        let retry = slots.learn_busy();
        if retry {
            tracing::warn!(
                backend,
                limit = slots.limit(),
                "the backend answered busy with other jobs running: sending it no more at once \
                 (set `local.concurrency` in its fragment to say so)"
            );
        }
        retry
    }

    /// Unloads a lease the table marked unloading, and records how it went.
    async fn unload<C: Control>(&self, eviction: &Eviction, control: &C, why: &str) {
        let mut unloading = Unloading {
            leases: self,
            backend: eviction.backend.clone(),
            outcome: None,
        };
        tracing::info!(backend = %eviction.backend, models = ?eviction.models, "unloading: {why}");
        unloading.outcome = Some(control.unload(eviction).await);
    }

    /// Unloads the backends idle past their TTL.
    pub async fn sweep<C: Control>(&self, ttl: impl Fn(&str) -> Duration, control: &C) {
        let expired = self.lock().expired(Instant::now(), ttl);
        for eviction in &expired {
            self.unload(eviction, control, "idle past its TTL").await;
        }
    }

    pub fn report(&self) -> GpuReport {
        let now = Instant::now();
        let table = self.lock();
        let leases = table
            .leases()
            .iter()
            .map(|(backend, lease)| LeaseReport {
                backend: backend.clone(),
                models: lease
                    .models
                    .iter()
                    .map(|(model, vram_mb)| ModelReport {
                        model: model.clone(),
                        vram_mb: *vram_mb,
                    })
                    .collect(),
                vram_mb: lease.vram_mb(),
                state: match lease.state {
                    table::State::Ready if lease.holders > 0 => "in use",
                    table::State::Ready => "idle",
                    table::State::Unloading => "unloading",
                }
                .into(),
                holders: lease.holders,
                idle_ms: (lease.holders == 0)
                    .then(|| now.duration_since(lease.last_used).as_millis() as u64),
            })
            .collect();
        let queue = table
            .queue()
            .iter()
            .map(|w| WaiterReport {
                backend: w.ask.backend.clone(),
                model: w.ask.model.clone(),
                vram_mb: w.ask.vram_mb,
                waited_ms: now.duration_since(w.since).as_millis() as u64,
            })
            .collect();
        let slots = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, slots)| slots.limit().is_some())
            .map(|(backend, slots)| (backend.clone(), slots.free() as usize))
            .collect();
        let c = table.counters;
        GpuReport {
            device: self.device.report(),
            capacity_mb: table.capacity_mb(),
            leased_mb: table.used_mb(),
            leases,
            queue,
            free_job_slots: slots,
            counters: CountersReport {
                granted: c.granted,
                evictions: c.evictions,
                idle_unloads: c.idle_unloads,
                failed_unloads: c.failed_unloads,
                timeouts: c.timeouts,
            },
        }
    }
}

/// Counts how long a request waited for `backend`'s slot and memory.
fn observe_wait(backend: &str, started: Instant) {
    crate::metrics::global()
        .gpu_wait
        .get_or_create(&crate::metrics::BackendLabel {
            backend: backend.into(),
        })
        .observe(started.elapsed().as_secs_f64());
}

/// `GET /admin/gpu`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GpuReport {
    pub device: DeviceReport,
    /// What the leases may hold together (the card, or the configured budget).
    pub capacity_mb: Option<u64>,
    /// What they hold now, by their estimates.
    pub leased_mb: u64,
    pub leases: Vec<LeaseReport>,
    /// Requests waiting for memory, first in line first.
    pub queue: Vec<WaiterReport>,
    /// Backends with a known job limit (configured, or learned from a busy
    /// answer) and their free job slots.
    pub free_job_slots: std::collections::BTreeMap<String, usize>,
    pub counters: CountersReport,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseReport {
    pub backend: String,
    pub models: Vec<ModelReport>,
    pub vram_mb: u64,
    /// `in use`, `idle` or `unloading`.
    pub state: String,
    pub holders: u32,
    /// How long it has been idle, when it is.
    pub idle_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ModelReport {
    pub model: String,
    pub vram_mb: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WaiterReport {
    pub backend: String,
    pub model: String,
    pub vram_mb: u64,
    pub waited_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CountersReport {
    pub granted: u64,
    /// Leases unloaded to make room.
    pub evictions: u64,
    /// Leases unloaded after their idle TTL.
    pub idle_unloads: u64,
    pub failed_unloads: u64,
    /// Requests that gave up waiting and moved down their chain.
    pub timeouts: u64,
}

impl GpuReport {
    /// The report as `tollgate gpu` prints it.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mb = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v} MB"));
        let d = &self.device;
        let mut out = format!(
            "device: {} ({}), {} total",
            d.name,
            d.source,
            mb(d.total_mb)
        );
        if let (Some(used), Some(free)) = (d.used_mb, d.free_mb) {
            let _ = write!(out, ", driver reports {used} MB used, {free} MB free");
        }
        let _ = writeln!(
            out,
            "\nleased: {} MB of {}",
            self.leased_mb,
            mb(self.capacity_mb)
        );
        let _ = writeln!(
            out,
            "\n{:<20} {:<10} {:>8} {:>8} {:>9}  models",
            "backend", "state", "vram", "holders", "idle"
        );
        for lease in &self.leases {
            let models: Vec<String> = lease
                .models
                .iter()
                .map(|m| format!("{} ({} MB)", m.model, m.vram_mb))
                .collect();
            let idle = lease.idle_ms.map_or_else(
                || "-".to_owned(),
                |ms| format!("{:.1}s", ms as f64 / 1000.0),
            );
            let _ = writeln!(
                out,
                "{:<20} {:<10} {:>5} MB {:>8} {:>9}  {}",
                lease.backend,
                lease.state,
                lease.vram_mb,
                lease.holders,
                idle,
                models.join(", ")
            );
        }
        if self.leases.is_empty() {
            out.push_str("(no backend holds a lease)\n");
        }
        let _ = writeln!(out, "\nwaiting: {}", self.queue.len());
        for w in &self.queue {
            let _ = writeln!(
                out,
                "  {} {} ({} MB), {} ms",
                w.backend, w.model, w.vram_mb, w.waited_ms
            );
        }
        for (backend, free) in &self.free_job_slots {
            let _ = writeln!(out, "job slots free on {backend}: {free}");
        }
        let c = &self.counters;
        let _ = writeln!(
            out,
            "granted {}, evictions {}, idle unloads {}, failed unloads {}, timeouts {}",
            c.granted, c.evictions, c.idle_unloads, c.failed_unloads, c.timeouts
        );
        out
    }
}
