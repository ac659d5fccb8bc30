//! Counts with a ceiling, shared below every stage: the front door takes a
//! place for each connection and each request, the request's record holds
//! it until the answer is done, and `/metrics` reads how many are taken.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A count with a ceiling.
#[derive(Debug)]
pub struct Gauge(AtomicUsize);

/// Client connections open now.
pub static CONNECTIONS: Gauge = Gauge::new();
/// Requests being served now (a stream until its end).
pub static IN_FLIGHT: Gauge = Gauge::new();

impl Gauge {
    const fn new() -> Self {
        Gauge(AtomicUsize::new(0))
    }

    /// Takes a place if fewer than `limit` are taken; it is given back when
    /// the [`Place`] drops.
    pub fn enter(&'static self, limit: usize) -> Option<Place> {
        if self.0.fetch_add(1, Ordering::AcqRel) >= limit {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Place(self))
    }

    pub fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One place taken on a [`Gauge`].
#[derive(Debug)]
pub struct Place(&'static Gauge);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_refuses_past_its_limit_and_gives_places_back() {
        static GAUGE: Gauge = Gauge::new();
        let a = GAUGE.enter(2).unwrap();
        let _b = GAUGE.enter(2).unwrap();
        assert!(GAUGE.enter(2).is_none());
        assert_eq!(GAUGE.now(), 2);
        drop(a);
        assert!(GAUGE.enter(2).is_some());
        assert_eq!(GAUGE.now(), 1);
    }
}
