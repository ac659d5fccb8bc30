//! The lease table's bookkeeping, with no I/O and no clock of its own: who
//! holds which backend, what is resident, what fits, what to unload to make
//! room, and who waits in line. [`super::Leases`] drives it and does the
//! waiting and the unloading.
//!
//! The rules:
//! - A backend's lease covers the models it has resident, each counted at
//!   its VRAM estimate; every lease together never exceeds the card.
//! - A lease with holders (requests in flight) is never unloaded.
//! - When a new model does not fit, idle leases are unloaded, least recently
//!   used first; when even that would not make room, the request waits.
//! - Waiters are served strictly first come, first served: a request that
//!   arrives while others wait joins the end of the line, so a large model
//!   cannot be starved by a stream of small ones.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// After an unload that failed, the lease is not chosen again for this long.
const UNLOAD_RETRY: Duration = Duration::from_secs(2);

/// A request for a model on a backend.
#[derive(Debug, Clone)]
pub struct Ask {
    pub backend: String,
    pub model: String,
    /// Its estimate on the card (0 for a model that runs on the CPU).
    pub vram_mb: u64,
    /// How many models the backend keeps loaded at once.
    pub max_loaded: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Serving, or idle and resident.
    Ready,
    /// Its models are being unloaded; its memory still counts.
    Unloading,
}

#[derive(Debug, Clone)]
pub struct Lease {
    /// Resident models and their estimates.
    pub models: BTreeMap<String, u64>,
    pub holders: u32,
    pub state: State,
    pub last_used: Instant,
    /// Not to be chosen for eviction before this (after a failed unload).
    retry_after: Option<Instant>,
}

impl Lease {
    pub fn vram_mb(&self) -> u64 {
        self.models.values().sum()
    }

    fn evictable(&self, now: Instant) -> bool {
        self.holders == 0
            && self.state == State::Ready
            && self.retry_after.is_none_or(|at| now >= at)
    }
}

/// A request in line.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub ticket: u64,
    pub ask: Ask,
    pub since: Instant,
}

/// Idle leases to unload before the request can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub backend: String,
    pub models: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The lease is held. `load` when the backend does not have the model
    /// resident yet; `displaced` are the models a single-model backend
    /// drops to load it.
    Granted { load: bool, displaced: Vec<String> },
    /// Unload these first (they are now marked unloading), then ask again.
    Evict(Vec<Eviction>),
    /// Wait for a release, in line.
    Wait,
    /// The model is larger than the whole card.
    TooLarge { capacity_mb: u64 },
}

/// Counts for `/admin/gpu`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub granted: u64,
    pub evictions: u64,
    pub failed_unloads: u64,
    pub idle_unloads: u64,
    pub timeouts: u64,
}

#[derive(Debug)]
pub struct Table {
    /// The card's memory; `None` when unknown (no GPU found and none
    /// configured): leases are then tracked but everything fits.
    capacity_mb: Option<u64>,
    leases: BTreeMap<String, Lease>,
    queue: VecDeque<Waiter>,
    next_ticket: u64,
    pub counters: Counters,
}

impl Table {
    pub fn new(capacity_mb: Option<u64>) -> Self {
        Table {
            capacity_mb,
            leases: BTreeMap::new(),
            queue: VecDeque::new(),
            next_ticket: 0,
            counters: Counters::default(),
        }
    }

    pub fn capacity_mb(&self) -> Option<u64> {
        self.capacity_mb
    }

    pub fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    pub fn leases(&self) -> &BTreeMap<String, Lease> {
        &self.leases
    }

    pub fn queue(&self) -> &VecDeque<Waiter> {
        &self.queue
    }

    /// The memory every lease holds, unloading ones included.
    pub fn used_mb(&self) -> u64 {
        self.leases.values().map(Lease::vram_mb).sum()
    }

    /// Decides what `ticket` may do now. A request not granted stays in line
    /// (or joins it) until it is granted or [`Table::leave`]s.
    pub fn admit(&mut self, ticket: u64, ask: &Ask, now: Instant) -> Decision {
        if let Some(capacity_mb) = self.capacity_mb
            && ask.vram_mb > capacity_mb
        {
            self.leave(ticket);
            return Decision::TooLarge { capacity_mb };
        }
        let decision = self.decide(ticket, ask, now);
        match &decision {
            Decision::Granted { load, displaced } => {
                self.grant(ask, *load, displaced, now);
                self.leave(ticket);
            }
            Decision::Evict(_) | Decision::Wait => self.join(ticket, ask, now),
            Decision::TooLarge { .. } => {}
        }
        decision
    }

    fn decide(&mut self, ticket: u64, ask: &Ask, now: Instant) -> Decision {
        let first_in_line = self.queue.front().is_none_or(|w| w.ticket == ticket);
        if !first_in_line {
            return Decision::Wait;
        }
        let lease = self.leases.get(&ask.backend);
        match lease {
            Some(lease) if lease.state == State::Unloading => return Decision::Wait,
            Some(lease) if lease.models.contains_key(&ask.model) => {
                return Decision::Granted {
                    load: false,
                    displaced: Vec::new(),
                };
            }
            _ => {}
        }
        // The model must be loaded. A backend at its model limit swaps, which
        // only an idle backend may do.
        let displaced: Vec<String> = match (lease, ask.max_loaded) {
            (Some(lease), Some(max)) if lease.models.len() >= max as usize => {
                if lease.holders > 0 {
                    return Decision::Wait;
                }
                lease.models.keys().cloned().collect()
            }
            _ => Vec::new(),
        };
        let Some(capacity_mb) = self.capacity_mb else {
            return Decision::Granted {
                load: true,
                displaced,
            };
        };
        let freed: u64 = displaced
            .iter()
            .filter_map(|m| lease.and_then(|l| l.models.get(m)))
            .sum();
        let used = self.used_mb() - freed;
        if used + ask.vram_mb <= capacity_mb {
            return Decision::Granted {
                load: true,
                displaced,
            };
        }
        self.evictions(ask, used + ask.vram_mb - capacity_mb, now)
    }

    /// Idle leases, least recently used first, that free `needed_mb`; or
    /// `Wait` when even all of them would not.
    fn evictions(&mut self, ask: &Ask, needed_mb: u64, now: Instant) -> Decision {
        let mut idle: Vec<(&String, &Lease)> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.evictable(now) && lease.vram_mb() > 0)
            .collect();
        idle.sort_by_key(|(_, lease)| lease.last_used);
        let mut freed = 0;
        let mut chosen = Vec::new();
        for (backend, lease) in idle {
            if freed >= needed_mb {
                break;
            }
            freed += lease.vram_mb();
            chosen.push(Eviction {
                backend: backend.clone(),
                models: lease.models.keys().cloned().collect(),
            });
        }
        if freed < needed_mb {
            tracing::debug!(backend = %ask.backend, model = %ask.model, needed_mb, "waiting for GPU memory");
            return Decision::Wait;
        }
        for eviction in &chosen {
            if let Some(lease) = self.leases.get_mut(&eviction.backend) {
                lease.state = State::Unloading;
            }
        }
        self.counters.evictions += chosen.len() as u64;
        Decision::Evict(chosen)
    }

    fn grant(&mut self, ask: &Ask, load: bool, displaced: &[String], now: Instant) {
        let lease = self.leases.entry(ask.backend.clone()).or_insert(Lease {
            models: BTreeMap::new(),
            holders: 0,
            state: State::Ready,
            last_used: now,
            retry_after: None,
        });
        for model in displaced {
            lease.models.remove(model);
        }
        if load {
            lease.models.insert(ask.model.clone(), ask.vram_mb);
        }
        lease.holders += 1;
        lease.last_used = now;
        self.counters.granted += 1;
    }

    fn join(&mut self, ticket: u64, ask: &Ask, now: Instant) {
        if !self.queue.iter().any(|w| w.ticket == ticket) {
            self.queue.push_back(Waiter {
                ticket,
                ask: ask.clone(),
                since: now,
            });
        }
    }

    /// Takes `ticket` out of line (granted, given up, or gone).
    pub fn leave(&mut self, ticket: u64) {
        self.queue.retain(|w| w.ticket != ticket);
    }

    /// A holder is done with `backend`.
    pub fn release(&mut self, backend: &str, now: Instant) {
        if let Some(lease) = self.leases.get_mut(backend) {
            lease.holders = lease.holders.saturating_sub(1);
            lease.last_used = now;
        }
    }

    /// The backend could not load `model`: it is not resident after all.
    pub fn forget(&mut self, backend: &str, model: &str) {
        if let Some(lease) = self.leases.get_mut(backend) {
            lease.models.remove(model);
        }
    }

    /// An unload finished. Done, or the backend is unreachable (whatever it
    /// held is gone with it): the lease is dropped. Failed: it stays
    /// resident, counted, and is not chosen again for a moment.
    pub fn unloaded(&mut self, backend: &str, outcome: Unload, now: Instant) {
        match outcome {
            Unload::Done => {
                self.leases.remove(backend);
            }
            Unload::Failed => {
                self.counters.failed_unloads += 1;
                if let Some(lease) = self.leases.get_mut(backend) {
                    lease.state = State::Ready;
                    lease.retry_after = Some(now + UNLOAD_RETRY);
                }
            }
        }
    }

    /// Idle leases past their TTL, now marked unloading.
    pub fn expired(&mut self, now: Instant, ttl: impl Fn(&str) -> Duration) -> Vec<Eviction> {
        let mut expired = Vec::new();
        for (backend, lease) in &mut self.leases {
            if lease.evictable(now) && now.duration_since(lease.last_used) >= ttl(backend) {
                lease.state = State::Unloading;
                expired.push(Eviction {
                    backend: backend.clone(),
                    models: lease.models.keys().cloned().collect(),
                });
            }
        }
        self.counters.idle_unloads += expired.len() as u64;
        expired
    }
}

/// How an unload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unload {
    Done,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(backend: &str, model: &str, vram_mb: u64) -> Ask {
        Ask {
            backend: backend.into(),
            model: model.into(),
            vram_mb,
            max_loaded: None,
        }
    }

    fn granted(decision: Decision) -> bool {
        matches!(decision, Decision::Granted { .. })
    }

    #[test]
    fn backends_share_the_card_while_they_fit() {
        let now = Instant::now();
        let mut table = Table::new(Some(24_000));
        let (a, b) = (table.ticket(), table.ticket());
        assert_eq!(
            table.admit(a, &ask("ollama", "qwen3:8b", 5_000), now),
            Decision::Granted {
                load: true,
                displaced: vec![]
            }
        );
        assert!(granted(table.admit(
            b,
            &ask("talkies", "whisper", 4_000),
            now
        )));
        // The same model again is already resident: no load.
        let c = table.ticket();
        assert_eq!(
            table.admit(c, &ask("ollama", "qwen3:8b", 5_000), now),
            Decision::Granted {
                load: false,
                displaced: vec![]
            }
        );
        assert_eq!(table.used_mb(), 9_000);
        assert_eq!(table.leases()["ollama"].holders, 2);
    }

    #[test]
    fn idle_leases_are_evicted_least_recently_used_first_and_busy_ones_never() {
        let start = Instant::now();
        let later = start + Duration::from_secs(1);
        let mut table = Table::new(Some(10_000));
        for (i, (backend, mb)) in [("a", 4_000), ("b", 3_000), ("c", 3_000)]
            .iter()
            .enumerate()
        {
            let t = table.ticket();
            let at = start + Duration::from_millis(i as u64);
            assert!(granted(table.admit(t, &ask(backend, "m", *mb), at)));
        }
        table.release("a", start);
        table.release("b", start + Duration::from_millis(5));
        // c stays busy. 4,000 more needs a (the older idle lease) only.
        let t = table.ticket();
        assert_eq!(
            table.admit(t, &ask("d", "m", 4_000), later),
            Decision::Evict(vec![Eviction {
                backend: "a".into(),
                models: vec!["m".into()]
            }])
        );
        // While a unloads, its memory still counts: no second grant.
        assert_eq!(table.admit(t, &ask("d", "m", 4_000), later), Decision::Wait);
        table.unloaded("a", Unload::Done, later);
        assert!(granted(table.admit(t, &ask("d", "m", 4_000), later)));
        assert_eq!(table.used_mb(), 10_000);
        // Now only b is idle, and 6,000 more cannot be made: wait.
        let big = table.ticket();
        assert_eq!(
            table.admit(big, &ask("e", "m", 6_000), later),
            Decision::Wait
        );
        assert_eq!(table.queue().len(), 1);
    }

    #[test]
    fn the_line_is_first_come_first_served() {
        let now = Instant::now();
        let mut table = Table::new(Some(8_000));
        let first = table.ticket();
        assert!(granted(table.admit(first, &ask("a", "m", 6_000), now)));
        let big = table.ticket();
        assert_eq!(table.admit(big, &ask("b", "m", 6_000), now), Decision::Wait);
        // A small request would fit, but it is behind the big one.
        let small = table.ticket();
        assert_eq!(
            table.admit(small, &ask("c", "m", 1_000), now),
            Decision::Wait
        );
        table.release("a", now);
        assert!(matches!(
            table.admit(big, &ask("b", "m", 6_000), now),
            Decision::Evict(_)
        ));
        table.unloaded("a", Unload::Done, now);
        assert!(granted(table.admit(big, &ask("b", "m", 6_000), now)));
        assert!(granted(table.admit(small, &ask("c", "m", 1_000), now)));
        assert!(table.queue().is_empty());
    }

    #[test]
    fn a_single_model_backend_swaps_only_when_idle() {
        let now = Instant::now();
        let mut table = Table::new(Some(24_000));
        let sd = |model: &str, mb| Ask {
            max_loaded: Some(1),
            ..ask("sdcpp", model, mb)
        };
        let t = table.ticket();
        assert!(granted(table.admit(t, &sd("sd-turbo", 1_700), now)));
        let t2 = table.ticket();
        assert_eq!(table.admit(t2, &sd("flux", 7_000), now), Decision::Wait);
        table.release("sdcpp", now);
        assert_eq!(
            table.admit(t2, &sd("flux", 7_000), now),
            Decision::Granted {
                load: true,
                displaced: vec!["sd-turbo".into()]
            }
        );
        assert_eq!(table.used_mb(), 7_000);
    }

    #[test]
    fn failed_unloads_keep_counting_and_expired_leases_unload() {
        let now = Instant::now();
        let mut table = Table::new(Some(5_000));
        let t = table.ticket();
        assert!(granted(table.admit(t, &ask("a", "m", 5_000), now)));
        table.release("a", now);
        let t2 = table.ticket();
        assert!(matches!(
            table.admit(t2, &ask("b", "m", 5_000), now),
            Decision::Evict(_)
        ));
        table.unloaded("a", Unload::Failed, now);
        assert_eq!(table.used_mb(), 5_000, "a failed unload frees nothing");
        assert_eq!(table.admit(t2, &ask("b", "m", 5_000), now), Decision::Wait);
        let retry = now + UNLOAD_RETRY;
        assert!(matches!(
            table.admit(t2, &ask("b", "m", 5_000), retry),
            Decision::Evict(_)
        ));
        table.unloaded("a", Unload::Done, retry);
        assert!(granted(table.admit(t2, &ask("b", "m", 5_000), retry)));
        table.release("b", retry);
        let ttl = |_: &str| Duration::from_secs(300);
        assert!(
            table
                .expired(retry + Duration::from_secs(299), ttl)
                .is_empty()
        );
        let expired = table.expired(retry + Duration::from_secs(300), ttl);
        assert_eq!(expired.len(), 1);
        assert_eq!(table.counters.idle_unloads, 1);
    }

    #[test]
    fn too_large_and_unknown_capacity() {
        let now = Instant::now();
        let mut table = Table::new(Some(4_000));
        let t = table.ticket();
        assert_eq!(
            table.admit(t, &ask("a", "huge", 9_000), now),
            Decision::TooLarge { capacity_mb: 4_000 }
        );
        let mut unknown = Table::new(None);
        let t = unknown.ticket();
        assert!(granted(unknown.admit(t, &ask("a", "huge", 90_000), now)));
    }
}
