//! Serving lanes: one thread per core, each with its own single-threaded
//! runtime, its own connections and its own pooled client per provider.
//!
//! A request then runs start to finish on one thread: reading the client,
//! the plugin calls, the upstream round trip (the client's connection task
//! lives on the same runtime) and the reply. With a work-stealing runtime
//! the same request woke the other worker three or four times (an `eventfd`
//! write and a futex each); on a small VM every such wake-up is an
//! inter-processor interrupt, and under load it cost more than the plugin
//! calls. Connections are dealt to lanes in turn as they are accepted.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// How many lanes serve: the cores this process may use (at most 64).
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 64)
    })
}

/// The lane the calling thread serves (0 off the serving threads).
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// Marks the calling thread as serving `lane`.
pub(crate) fn enter(lane: usize) {
    LANE.with(|l| l.set(lane));
}
