//! One counted limit: how much of it is used and when that usage is forgotten.
//!
//! Three ways of forgetting cover every provider in the catalogue:
//! - *sliding*: an exact log of what was counted when, each entry forgotten a
//!   whole period after it. A sequence this window allows is allowed by a
//!   provider's fixed window, sliding log or token bucket of the same limit,
//!   so the gateway never sends what the provider would answer with 429, and
//!   it is not stricter than a sliding log, so no free request is wasted.
//! - *bucket*: usage drains continuously at limit/period (Cerebras' token
//!   buckets), which lets through more than a sliding window after a burst.
//! - *calendar*: usage resets at a fixed instant (UTC midnight, a configured
//!   time of day, a billing day), or earlier when the provider says so.

use crate::clock::{self, DAY_MS};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Requests,
    Tokens,
    /// Millionths of a US dollar, at the model's prices.
    Credit,
}

/// The span of a window, as a header names it or a rule implies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Span {
    Minute,
    Hour,
    Day,
    Month,
}

/// How a window forgets usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    Sliding { period_ms: u64 },
    Bucket { period_ms: u64 },
    Daily { offset_ms: u64 },
    Monthly { day: u32 },
}

/// A limit as configured: `rpm: 30` is `{ name: "rpm", Requests, 30, Sliding 60 s }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub metric: Metric,
    pub span: Span,
    pub limit: u64,
    pub refill: Refill,
}

/// Most entries a sliding log keeps. Past it, the two oldest merge into the
/// later one, which only makes the window stricter; it takes more than 4,096
/// distinct milliseconds of traffic inside one period to get there.
const MAX_ENTRIES: usize = 4_096;

/// The limit of a window that only counts (a month's spend, a key's month of
/// requests): far beyond any real use, and exact as a Lua number in the
/// Redis script (below 2^53).
pub const UNLIMITED: u64 = 1 << 52;

/// The persisted part of a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Counter {
    /// (instant, amount), oldest first, one entry per millisecond at most;
    /// `total` is their sum, kept so a check does not walk the log.
    Sliding {
        slots: VecDeque<(u64, u64)>,
        #[serde(skip)]
        total: u64,
    },
    /// Level at instant `at`.
    Bucket { level: f64, at: u64 },
    /// Usage since `start`; `ends` is an earlier reset the provider stated.
    Calendar {
        start: u64,
        used: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends: Option<u64>,
    },
}

/// Why an amount does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full {
    pub used: u64,
    pub limit: u64,
    /// When enough will have been forgotten; `None` when the amount exceeds
    /// the limit itself and never fits.
    pub frees_at: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Window {
    pub rule: Rule,
    counter: Counter,
    /// Reserved and not yet settled, so a provider's "remaining" (which does
    /// not know about requests still on their way) is not taken as final.
    inflight: u64,
}

impl Window {
    pub fn new(rule: Rule, now: u64) -> Self {
        Window {
            rule,
            counter: empty_counter(rule.refill, now),
            inflight: 0,
        }
    }

    /// A window carrying saved usage. A counter of another kind (the
    /// configuration changed) keeps its usage as one lump in the new kind.
    pub fn restore(rule: Rule, counter: Counter, now: u64) -> Self {
        let mut counter = counter;
        if let Counter::Sliding { slots, total } = &mut counter {
            *total = slots.iter().map(|(_, n)| n).sum();
        }
        let mut window = Window {
            rule,
            counter,
            inflight: 0,
        };
        if !kind_matches(rule.refill, &window.counter) {
            let used = window.used_by_counter(now);
            window.counter = empty_counter(rule.refill, now);
            window.apply(now, now, used as i64);
        }
        window
    }

    pub fn counter(&self) -> &Counter {
        &self.counter
    }

    pub fn used(&mut self, now: u64) -> u64 {
        self.refresh(now);
        self.used_by_counter(now)
    }

    pub fn remaining(&mut self, now: u64) -> u64 {
        self.rule.limit.saturating_sub(self.used(now))
    }

    /// Whether `amount` more fits under the limit now.
    pub fn check(&mut self, now: u64, amount: u64) -> Result<(), Full> {
        let used = self.used(now);
        if used.saturating_add(amount) <= self.rule.limit {
            return Ok(());
        }
        let frees_at = (amount <= self.rule.limit)
            .then(|| self.frees_at(now, used + amount - self.rule.limit))
            .flatten();
        Err(Full {
            used,
            limit: self.rule.limit,
            frees_at,
        })
    }

    /// Counts a reservation made at `now`.
    pub fn reserve(&mut self, now: u64, amount: u64) {
        self.refresh(now);
        self.apply(now, now, amount as i64);
        self.inflight += amount;
    }

    /// Replaces a reservation made at `at` with what was really used.
    pub fn settle(&mut self, now: u64, at: u64, reserved: u64, actual: u64) {
        self.refresh(now);
        self.inflight = self.inflight.saturating_sub(reserved);
        self.apply(now, at, actual as i64 - reserved as i64);
    }

    /// Takes the provider's word for what remains (`x-ratelimit-remaining-*`)
    /// and, for calendar windows, when it resets. Rolling windows are only
    /// corrected upwards: counting more than the provider does is safe.
    pub fn sync(&mut self, now: u64, remaining: u64, reset_in_ms: Option<u64>) {
        self.refresh(now);
        let target = self.rule.limit.saturating_sub(remaining) + self.inflight;
        let used = self.used_by_counter(now);
        match &mut self.counter {
            Counter::Calendar { used, ends, .. } => {
                *used = target;
                if let Some(reset) = reset_in_ms {
                    *ends = Some(now + reset.max(1));
                }
            }
            _ if target > used => self.apply(now, now, (target - used) as i64),
            _ => {}
        }
    }

    /// When usage next drops, for display.
    pub fn resets_at(&mut self, now: u64) -> Option<u64> {
        self.refresh(now);
        match (&self.counter, self.rule.refill) {
            (Counter::Sliding { slots, .. }, Refill::Sliding { period_ms }) => {
                slots.front().map(|(at, _)| at + period_ms)
            }
            (Counter::Bucket { level, .. }, Refill::Bucket { period_ms }) => (*level > 0.0)
                .then(|| now + (level / rate(self.rule.limit, period_ms)).ceil() as u64),
            (Counter::Calendar { start, ends, .. }, refill) => {
                Some(calendar_end(refill, *start, *ends))
            }
            _ => None,
        }
    }

    /// Forgets what has expired.
    fn refresh(&mut self, now: u64) {
        let refill = self.rule.refill;
        let limit = self.rule.limit;
        match (&mut self.counter, refill) {
            (Counter::Sliding { slots, total }, Refill::Sliding { period_ms }) => {
                while let Some((at, n)) = slots.front()
                    && at + period_ms <= now
                {
                    *total -= n;
                    slots.pop_front();
                }
            }
            (Counter::Bucket { level, at }, Refill::Bucket { period_ms }) if now > *at => {
                *level = (*level - (now - *at) as f64 * rate(limit, period_ms)).max(0.0);
                *at = now;
            }
            (Counter::Calendar { start, used, ends }, refill)
                if now >= calendar_end(refill, *start, *ends) =>
            {
                *start = calendar_start(refill, now);
                *used = 0;
                *ends = None;
            }
            _ => {}
        }
    }

    fn used_by_counter(&self, now: u64) -> u64 {
        match &self.counter {
            Counter::Sliding { total, .. } => *total,
            Counter::Bucket { level, at } => {
                let drained = match self.rule.refill {
                    Refill::Bucket { period_ms } => {
                        now.saturating_sub(*at) as f64 * rate(self.rule.limit, period_ms)
                    }
                    _ => 0.0,
                };
                (level - drained).max(0.0).ceil() as u64
            }
            Counter::Calendar { used, .. } => *used,
        }
    }

    /// Adds (or takes back) `delta` counted at instant `at`.
    fn apply(&mut self, now: u64, at: u64, delta: i64) {
        if delta == 0 {
            return;
        }
        let refill = self.rule.refill;
        match (&mut self.counter, refill) {
            (Counter::Sliding { slots, total }, Refill::Sliding { period_ms }) => {
                // Merges only move amounts later, so what was counted at
                // `at` is in the first entry at or after it, unless it has
                // expired.
                let live = at + period_ms > now;
                let first = slots.partition_point(|(t, _)| *t < at);
                match slots.get_mut(first) {
                    Some(entry) if live && (delta < 0 || entry.0 == at) => {
                        let before = entry.1;
                        entry.1 = entry.1.saturating_add_signed(delta);
                        *total = *total - before + entry.1;
                    }
                    _ if delta > 0 => {
                        push_sliding(slots, now, delta as u64);
                        *total += delta as u64;
                    }
                    _ => {}
                }
            }
            (Counter::Bucket { level, .. }, _) => *level = (*level + delta as f64).max(0.0),
            (Counter::Calendar { start, used, .. }, refill)
                if delta > 0 || calendar_start(refill, at) == *start =>
            {
                *used = used.saturating_add_signed(delta);
            }
            _ => {}
        }
    }

    /// When `needed` units will have been forgotten.
    fn frees_at(&self, now: u64, needed: u64) -> Option<u64> {
        match (&self.counter, self.rule.refill) {
            (Counter::Sliding { slots, .. }, Refill::Sliding { period_ms }) => {
                let mut freed = 0;
                for (at, n) in slots {
                    freed += n;
                    if freed >= needed {
                        return Some(at + period_ms);
                    }
                }
                None
            }
            (Counter::Bucket { .. }, Refill::Bucket { period_ms }) => {
                Some(now + (needed as f64 / rate(self.rule.limit, period_ms)).ceil() as u64)
            }
            (Counter::Calendar { start, ends, .. }, refill) => {
                Some(calendar_end(refill, *start, *ends))
            }
            _ => None,
        }
    }
}

/// Appends `amount` counted at `now` to a sliding log, keeping it bounded.
fn push_sliding(slots: &mut VecDeque<(u64, u64)>, now: u64, amount: u64) {
    match slots.back_mut() {
        Some((at, n)) if *at >= now => *n += amount,
        _ => slots.push_back((now, amount)),
    }
    if slots.len() > MAX_ENTRIES
        && let Some((_, oldest)) = slots.pop_front()
        && let Some((_, next)) = slots.front_mut()
    {
        *next += oldest;
    }
}

/// Units drained per millisecond.
fn rate(limit: u64, period_ms: u64) -> f64 {
    limit as f64 / period_ms as f64
}

fn empty_counter(refill: Refill, now: u64) -> Counter {
    match refill {
        Refill::Sliding { .. } => Counter::Sliding {
            slots: VecDeque::new(),
            total: 0,
        },
        Refill::Bucket { .. } => Counter::Bucket {
            level: 0.0,
            at: now,
        },
        Refill::Daily { .. } | Refill::Monthly { .. } => Counter::Calendar {
            start: calendar_start(refill, now),
            used: 0,
            ends: None,
        },
    }
}

fn kind_matches(refill: Refill, counter: &Counter) -> bool {
    matches!(
        (refill, counter),
        (Refill::Sliding { .. }, Counter::Sliding { .. })
            | (Refill::Bucket { .. }, Counter::Bucket { .. })
            | (
                Refill::Daily { .. } | Refill::Monthly { .. },
                Counter::Calendar { .. }
            )
    )
}

/// Start of the calendar period containing `now`.
pub fn calendar_start(refill: Refill, now: u64) -> u64 {
    match refill {
        Refill::Daily { offset_ms } => clock::day_start(now, offset_ms),
        Refill::Monthly { day } => clock::month_start(now, day),
        _ => now,
    }
}

/// End of the calendar period starting at `start`, or the provider's earlier
/// stated reset.
pub fn calendar_end(refill: Refill, start: u64, ends: Option<u64>) -> u64 {
    let natural = match refill {
        Refill::Daily { .. } => start + DAY_MS,
        Refill::Monthly { day } => clock::month_end(start, day),
        _ => start,
    };
    ends.map_or(natural, |ends| ends.min(natural))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{MINUTE_MS, SECOND_MS, utc};

    fn rule(limit: u64, refill: Refill) -> Rule {
        Rule {
            name: "test",
            metric: Metric::Requests,
            span: Span::Minute,
            limit,
            refill,
        }
    }

    const MINUTE: Refill = Refill::Sliding {
        period_ms: MINUTE_MS,
    };

    #[test]
    fn sliding_minute_frees_a_minute_after_each_request() {
        let t0 = utc(2026, 11, 25, 12, 0) + 300;
        let mut w = Window::new(rule(3, MINUTE), t0);
        for i in 0..3 {
            w.check(t0 + i * 10 * SECOND_MS, 1).unwrap();
            w.reserve(t0 + i * 10 * SECOND_MS, 1);
        }
        let full = w.check(t0 + 30 * SECOND_MS, 1).unwrap_err();
        assert_eq!((full.used, full.limit), (3, 3));
        let first_free = t0 + MINUTE_MS;
        assert_eq!(full.frees_at, Some(first_free));
        assert!(w.check(first_free - 1, 1).is_err());
        assert!(w.check(first_free, 1).is_ok());
        assert_eq!(w.used(first_free), 2);
    }

    #[test]
    fn sliding_never_allows_more_than_the_limit_in_any_minute() {
        // Hammer a 5-per-minute window every 100 ms for ten minutes and check
        // every 60-second span of what it let through.
        let t0 = utc(2026, 11, 25, 0, 0);
        let mut w = Window::new(rule(5, MINUTE), t0);
        let mut sent = Vec::new();
        for step in 0..6_000 {
            let now = t0 + step * 100;
            if w.check(now, 1).is_ok() {
                w.reserve(now, 1);
                sent.push(now);
            }
        }
        for (i, start) in sent.iter().enumerate() {
            let in_span = sent[i..]
                .iter()
                .take_while(|t| **t < start + MINUTE_MS)
                .count();
            assert!(
                in_span <= 5,
                "{in_span} requests within a minute of {start}"
            );
        }
        // And it is not stricter than that: five in every minute.
        assert_eq!(sent.len(), 5 * 10);
    }

    #[test]
    fn bucket_refills_continuously() {
        let t0 = 1_000_000;
        let r = rule(
            60,
            Refill::Bucket {
                period_ms: MINUTE_MS,
            },
        );
        let mut w = Window::new(r, t0);
        w.reserve(t0, 60);
        let full = w.check(t0, 1).unwrap_err();
        assert_eq!(full.frees_at, Some(t0 + SECOND_MS));
        assert!(w.check(t0 + SECOND_MS, 1).is_ok());
        assert_eq!(w.used(t0 + 30 * SECOND_MS), 30);
        assert_eq!(w.used(t0 + 2 * MINUTE_MS), 0);
    }

    #[test]
    fn daily_window_resets_at_utc_midnight_or_the_configured_time() {
        let evening = utc(2026, 11, 25, 23, 59);
        let mut w = Window::new(rule(2, Refill::Daily { offset_ms: 0 }), evening);
        w.reserve(evening, 2);
        let full = w.check(evening, 1).unwrap_err();
        assert_eq!(full.frees_at, Some(utc(2026, 11, 26, 0, 0)));
        assert!(w.check(utc(2026, 11, 26, 0, 0), 1).is_ok());

        let offset = 7 * clock::HOUR_MS;
        let mut w = Window::new(rule(1, Refill::Daily { offset_ms: offset }), evening);
        w.reserve(evening, 1);
        assert!(w.check(utc(2026, 11, 26, 6, 59), 1).is_err());
        assert!(w.check(utc(2026, 11, 26, 7, 0), 1).is_ok());
    }

    #[test]
    fn monthly_window_resets_on_the_billing_day() {
        let t0 = utc(2026, 11, 30, 12, 0);
        let mut w = Window::new(rule(1000, Refill::Monthly { day: 1 }), t0);
        w.reserve(t0, 1000);
        assert_eq!(
            w.check(t0, 1).unwrap_err().frees_at,
            Some(utc(2026, 12, 1, 0, 0))
        );
        assert_eq!(w.used(utc(2026, 12, 1, 0, 0)), 0);
    }

    #[test]
    fn settling_replaces_the_estimate_with_real_usage() {
        let t0 = utc(2026, 11, 25, 10, 0);
        let mut w = Window::new(rule(1000, Refill::Daily { offset_ms: 0 }), t0);
        w.reserve(t0, 600);
        w.settle(t0 + 500, t0, 600, 120);
        assert_eq!(w.used(t0 + 500), 120);
        // A failure that the provider does not count gives everything back.
        w.reserve(t0 + 600, 300);
        w.settle(t0 + 700, t0 + 600, 300, 0);
        assert_eq!(w.used(t0 + 700), 120);

        let mut s = Window::new(rule(1000, MINUTE), t0);
        s.reserve(t0, 500);
        s.settle(t0 + 3 * SECOND_MS, t0, 500, 50);
        assert_eq!(s.used(t0 + 3 * SECOND_MS), 50);
        // Settled after its slot expired: nothing to take back, nothing goes negative.
        s.reserve(t0 + 4 * SECOND_MS, 100);
        s.settle(t0 + 3 * MINUTE_MS, t0 + 4 * SECOND_MS, 100, 10);
        assert_eq!(s.used(t0 + 3 * MINUTE_MS), 0);
    }

    #[test]
    fn sync_trusts_the_providers_count() {
        let t0 = utc(2026, 11, 25, 10, 0);
        let mut w = Window::new(rule(1000, Refill::Daily { offset_ms: 0 }), t0);
        w.reserve(t0, 10);
        w.settle(t0, t0, 10, 10);
        // Someone else spends the same key: the provider says 900 remain.
        w.sync(t0 + 1, 900, None);
        assert_eq!(w.used(t0 + 1), 100);
        // A provider that resets in 3 minutes (Groq's rolling day) is believed.
        w.sync(t0 + 2, 0, Some(3 * MINUTE_MS));
        assert!(w.check(t0 + 2, 1).is_err());
        assert!(w.check(t0 + 2 + 3 * MINUTE_MS, 1).is_ok());

        let mut s = Window::new(rule(30, MINUTE), t0);
        s.reserve(t0, 5);
        s.settle(t0, t0, 5, 5);
        s.sync(t0, 10, None);
        assert_eq!(s.used(t0), 20, "raised to what the provider counts");
        s.sync(t0, 29, None);
        assert_eq!(s.used(t0), 20, "never lowered below our own count");
    }

    #[test]
    fn sync_leaves_room_for_requests_still_in_flight() {
        let t0 = utc(2026, 11, 25, 10, 0);
        let mut w = Window::new(rule(100, Refill::Daily { offset_ms: 0 }), t0);
        w.reserve(t0, 1);
        w.reserve(t0, 1);
        w.settle(t0, t0, 1, 1);
        // The provider counted the settled request only.
        w.sync(t0, 99, None);
        assert_eq!(w.used(t0), 2);
    }

    #[test]
    fn a_long_log_merges_forward_and_stays_safe() {
        let t0 = utc(2026, 11, 25, 12, 0);
        let mut w = Window::new(rule(1_000_000, MINUTE), t0);
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            w.reserve(t0 + i, 1);
        }
        let Counter::Sliding { slots, .. } = w.counter() else {
            panic!()
        };
        assert_eq!(slots.len(), MAX_ENTRIES);
        assert_eq!(w.used(t0 + 5_000), MAX_ENTRIES as u64 + 10);
        // The merged amounts expire with the later entry, never earlier.
        assert_eq!(w.used(t0 + MINUTE_MS + 10), MAX_ENTRIES as u64 - 1);
    }

    #[test]
    fn an_amount_larger_than_the_limit_never_fits() {
        let mut w = Window::new(rule(100, MINUTE), 0);
        let full = w.check(0, 101).unwrap_err();
        assert_eq!(full.frees_at, None);
    }

    #[test]
    fn restoring_a_counter_of_another_kind_keeps_its_usage() {
        let t0 = utc(2026, 11, 25, 10, 0);
        let mut old = Window::new(rule(30, MINUTE), t0);
        old.reserve(t0, 7);
        let bucket = rule(
            30,
            Refill::Bucket {
                period_ms: MINUTE_MS,
            },
        );
        let mut new = Window::restore(bucket, old.counter().clone(), t0);
        assert_eq!(new.used(t0), 7);
        let saved = serde_json::to_string(new.counter()).unwrap();
        let back: Counter = serde_json::from_str(&saved).unwrap();
        assert_eq!(&back, new.counter());
    }
}
