//! Requests, fallbacks and failures per second over the last ten minutes,
//! for the dashboard's chart: a page opened now shows the minutes before it
//! was opened, which counters polled from the page could not.
//!
//! One slot per second in a ring. A slot is claimed for its second by the
//! first request of that second, which clears what the slot counted ten
//! minutes earlier; a request on another thread in the same instant may be
//! lost in that clearing. That is a dashboard's precision, not Prometheus's:
//! the counters in `/metrics` are exact.

use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Seconds the ring holds.
pub const SPAN_SECONDS: usize = 600;

struct Slot {
    /// The Unix second this slot counts.
    second: AtomicU64,
    requests: AtomicU32,
    fallbacks: AtomicU32,
    failures: AtomicU32,
}

pub struct Activity {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Activity")
    }
}

impl Default for Activity {
    fn default() -> Self {
        let slots = (0..SPAN_SECONDS)
            .map(|_| Slot {
                second: AtomicU64::new(0),
                requests: AtomicU32::new(0),
                fallbacks: AtomicU32::new(0),
                failures: AtomicU32::new(0),
            })
            .collect();
        Activity { slots }
    }
}

/// One second of the chart.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Second {
    /// Unix seconds.
    pub at: u64,
    pub requests: u32,
    pub fallbacks: u32,
    pub failures: u32,
}

impl Activity {
    /// Counts one request that ended at Unix second `now`, after
    /// `fallbacks` moves down its chain, failed or not.
    pub fn record(&self, now: u64, fallbacks: u32, failed: bool) {
        let slot = self.slot(now);
        slot.requests.fetch_add(1, Relaxed);
        if fallbacks > 0 {
            slot.fallbacks.fetch_add(fallbacks, Relaxed);
        }
        if failed {
            slot.failures.fetch_add(1, Relaxed);
        }
    }

    /// The slot of second `now`, cleared if it last counted another.
    fn slot(&self, now: u64) -> &Slot {
        let slot = &self.slots[(now % SPAN_SECONDS as u64) as usize];
        let seen = slot.second.load(Relaxed);
        if seen != now
            && slot
                .second
                .compare_exchange(seen, now, Relaxed, Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Relaxed);
            slot.fallbacks.store(0, Relaxed);
            slot.failures.store(0, Relaxed);
        }
        slot
    }

    /// The last `seconds` seconds up to `now`, oldest first, with zeros for
    /// seconds nothing happened in.
    pub fn last(&self, now: u64, seconds: usize) -> Vec<Second> {
        let seconds = seconds.min(SPAN_SECONDS) as u64;
        (0..seconds)
            .rev()
            .map(|back| {
                let at = now.saturating_sub(back);
                let slot = &self.slots[(at % SPAN_SECONDS as u64) as usize];
                if slot.second.load(Relaxed) != at {
                    return Second {
                        at,
                        requests: 0,
                        fallbacks: 0,
                        failures: 0,
                    };
                }
                Second {
                    at,
                    requests: slot.requests.load(Relaxed),
                    fallbacks: slot.fallbacks.load(Relaxed),
                    failures: slot.failures.load(Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_counted_apart_and_old_ones_forgotten() {
        let activity = Activity::default();
        activity.record(1_000, 0, false);
        activity.record(1_000, 2, true);
        activity.record(1_002, 1, false);
        let seen = activity.last(1_002, 3);
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen[0],
            Second {
                at: 1_000,
                requests: 2,
                fallbacks: 2,
                failures: 1
            }
        );
        assert_eq!(seen[1].requests, 0, "a quiet second reads zero");
        assert_eq!(seen[2].fallbacks, 1);
        // Ten minutes on, the same slot counts the new second only.
        let later = 1_000 + SPAN_SECONDS as u64;
        activity.record(later, 0, false);
        assert_eq!(activity.last(later, 1)[0].requests, 1);
        assert_eq!(
            activity.last(later, SPAN_SECONDS)[0].requests,
            0,
            "second 1_001 was never counted"
        );
    }
}
