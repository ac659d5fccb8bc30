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
//!
//! A lane that runs out of work keeps polling its sockets for a short while
//! (the idle-poll window) before it sleeps in the kernel, unless it has many
//! requests in flight; see [`poll_idle`].

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a lane polls after its last piece of work, unless
/// `TOLLGATE_IDLE_POLL_US` says otherwise (0 turns polling off): 250 µs, or
/// none when the gateway may use only one core. There a polling lane takes
/// the core from the client and the provider it waits for: on one core of
/// the development VM, polling cost a fifth of the requests at concurrency 1
/// (`BENCH_CPUS=0 just bench`).
pub fn default_idle_poll() -> Duration {
    if count() > 1 {
        Duration::from_micros(250)
    } else {
        Duration::ZERO
    }
}

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
    static IDLE: OnceCell<Rc<Idle>> = const { OnceCell::new() };
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

/// The serving lanes' runtimes, for the count of their tasks.
static RUNTIMES: std::sync::Mutex<Vec<tokio::runtime::Handle>> = std::sync::Mutex::new(Vec::new());

/// The tasks alive on the serving lanes (connections, streams, spawned
/// settlements): back to its idle level when nothing leaks.
pub fn tasks() -> usize {
    let runtimes = RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
    runtimes.iter().map(|h| h.metrics().num_alive_tasks()).sum()
}

/// The lane the calling thread serves (0 off the serving threads).
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// Marks the calling thread as serving `lane`, on `runtime`.
pub(crate) fn enter(lane: usize, runtime: tokio::runtime::Handle) {
    LANE.with(|l| l.set(lane));
    RUNTIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(runtime);
}

/// Tells the calling lane's poller that work happened (a request came in, a
/// response or a stream ended), so it polls for another window. Off the
/// serving threads, or with polling off, it does nothing.
pub fn busy() {
    with_idle(Idle::busy);
}

/// Tells the calling lane's poller that a request came in; the poller
/// counts it as in flight until the returned guard drops (when the response,
/// or a stream's first chunk, is ready), which counts as work too.
pub fn request() -> InFlight {
    let counted = with_idle(|idle| {
        idle.in_flight.set(idle.in_flight.get() + 1);
        idle.busy();
    });
    InFlight { counted }
}

/// A request being served on this lane (see [`request`]). It holds no
/// reference to the poller, so a connection's future stays `Send`; a lane's
/// futures never leave its thread, so the drop finds the same poller.
pub struct InFlight {
    counted: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            with_idle(|idle| {
                idle.in_flight.set(idle.in_flight.get().saturating_sub(1));
                idle.busy();
            });
        }
    }
}

/// Runs `f` on this thread's poller, if it has one; says whether it did.
fn with_idle(f: impl FnOnce(&Idle)) -> bool {
    IDLE.with(|idle| idle.get().map(|idle| f(idle)).is_some())
}

/// Polling goes on while at least this many of the last 8 windows had work
/// come in before they ran out.
const PAYING_WINDOWS: u32 = 6;

/// A lane with more requests in flight than this does not poll.
///
/// With that many waiting on their providers or clients, the next event is
/// never far off, and the processes that will send it share the cores: a
/// lane that yields its way to it takes turns from them, each a context
/// switch that mostly finds nothing, where blocking would have waited for
/// the next event and found several ready. Below it, a lane's quiet spells
/// are round trips, and its core would halt in them. On the 2-core
/// development VM polling still paid at concurrency 8 (4 requests a lane)
/// and cost at 32 (16 a lane). With this limit, concurrency 32 made 0.08
/// `sched_yield`s a request instead of 0.3-0.6, and served 7.2% more
/// requests side by side with the build before (0.6% fewer with the roles
/// swapped: medians of 30 pairs, near the noise floor of about 3%).
const MAX_IN_FLIGHT_POLLING: u32 = 8;

/// While polling does not pay, one wake-up in this many polls anyway, to
/// notice when the traffic has changed.
const PROBE_EVERY: u32 = 32;

/// One lane's poller state. Only its own thread touches it.
struct Idle {
    /// Bumped by `busy`; a change restarts the window.
    work: Cell<u64>,
    /// The poller is asleep, waiting for `wake`.
    asleep: Cell<bool>,
    wake: Notify,
    /// The last 8 windows, newest in the lowest bit: 1 when work came in
    /// during the window, 0 when it ran out.
    recent: Cell<u8>,
    /// Wake-ups that did not poll since the last probe.
    skipped: Cell<u32>,
    /// Requests being served on this lane (see [`request`]).
    in_flight: Cell<u32>,
}

impl Idle {
    fn busy(&self) {
        self.work.set(self.work.get().wrapping_add(1));
        if self.asleep.replace(false) {
            self.wake.notify_one();
        }
    }

    fn record(&self, work_came: bool) {
        self.recent
            .set(self.recent.get() << 1 | u8::from(work_came));
    }

    /// Whether to poll after this wake-up: when polling has paid lately, or
    /// as an occasional probe.
    fn worth_polling(&self) -> bool {
        if self.recent.get().count_ones() >= PAYING_WINDOWS {
            return true;
        }
        let skipped = self.skipped.get() + 1;
        self.skipped.set(skipped % PROBE_EVERY);
        skipped == PROBE_EVERY
    }
}

/// Runs beside a lane's serving future, on the same single-threaded runtime,
/// and never ends (drop it with the lane): after each piece of work it keeps
/// the runtime polling its sockets and timers for `window`, then sleeps until
/// [`busy`] is called again. A zero `window` sleeps for good.
///
/// Why: a thread that waits in `epoll_wait` leaves its core idle, and on a VM
/// an idle core halts. The next request then waits for the hypervisor to run
/// the core again and finds its caches cold; on the 2-core development VM that
/// cost Tollgate about 150 µs of a request at concurrency 1 (`just bench`).
/// Polling keeps the core running while more work is likely: a client that
/// sends its next request as soon as it has the last answer, or a local
/// provider that answers within the window. Each turn first yields the CPU to
/// any other thread waiting for it (the provider or the client on the same
/// machine), so the polling never holds them up.
///
/// It polls only while polling pays: when most recent windows ran out with
/// no work (requests a millisecond apart, say, or providers slower than the
/// window), a window would only burn CPU, so the lane sleeps at once, and
/// polls again on one wake-up in [`PROBE_EVERY`] to notice when the traffic
/// changes. An idle gateway costs nothing either way.
pub async fn poll_idle(window: Duration) {
    if window.is_zero() {
        return std::future::pending().await;
    }
    let idle = Rc::new(Idle {
        work: Cell::new(0),
        asleep: Cell::new(true),
        wake: Notify::new(),
        recent: Cell::new(u8::MAX),
        skipped: Cell::new(0),
        in_flight: Cell::new(0),
    });
    IDLE.with(|cell| {
        // Another poller already serves this thread: let it.
        if cell.set(idle.clone()).is_err() {
            tracing::warn!("a second idle poller on one lane; ignoring it");
        }
    });
    loop {
        idle.wake.notified().await;
        if idle.worth_polling() {
            poll_for(&idle, window).await;
        }
        idle.asleep.set(true);
    }
}

/// Polls until `window` passes with no work, or until the lane has more
/// than [`MAX_IN_FLIGHT_POLLING`] requests in flight. A window cut short so
/// counts as one that did not pay: under such load the lane polls only on
/// the occasional probe, and when the load goes the probes find that
/// polling pays again.
async fn poll_for(idle: &Idle, window: Duration) {
    let mut seen = idle.work.get();
    let mut until = Instant::now() + window;
    loop {
        if idle.in_flight.get() > MAX_IN_FLIGHT_POLLING {
            idle.record(false);
            return;
        }
        std::thread::yield_now();
        // The runtime polls its sockets and timers without blocking, runs
        // what became ready, and comes back here.
        tokio::task::yield_now().await;
        let work = idle.work.get();
        let now = Instant::now();
        if work != seen {
            idle.record(true);
            seen = work;
            until = now + window;
        } else if now >= until {
            idle.record(false);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this thread's poller is asleep.
    fn asleep() -> bool {
        IDLE.with(|idle| idle.get().is_some_and(|i| i.asleep.get()))
    }

    /// Runs `test` beside a poller, on one thread, as a lane would.
    fn beside_poller(window: Duration, test: impl std::future::Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::select! {
                _ = test => {}
                _ = poll_idle(window) => unreachable!("the poller never ends"),
            }
        });
    }

    #[test]
    fn polls_for_a_window_after_work_then_sleeps() {
        let window = Duration::from_millis(200);
        beside_poller(window, async {
            tokio::task::yield_now().await;
            assert!(asleep(), "no work yet: asleep");
            // Work every 20 ms keeps it polling well past one window, and
            // timers fire while it polls.
            for _ in 0..15 {
                busy();
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(!asleep(), "polling within the window after work");
            }
            tokio::time::sleep(window * 3).await;
            assert!(asleep(), "asleep once a window passed without work");
            busy();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!asleep(), "polling again after new work");
        });
    }

    #[test]
    fn stops_polling_when_it_does_not_pay_and_probes_to_start_again() {
        let window = Duration::from_millis(100);
        beside_poller(window, async {
            // Work that comes in long after each window has run out.
            for _ in 0..4 {
                busy();
                tokio::time::sleep(window * 2).await;
            }
            busy();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(asleep(), "windows kept running out: no more polling");
            // Back-to-back work: a probe finds it, and polling resumes.
            for _ in 0..PROBE_EVERY * 2 {
                busy();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!asleep(), "work kept coming: polling again");
        });
    }

    #[test]
    fn a_lane_with_many_requests_in_flight_does_not_poll() {
        beside_poller(Duration::from_millis(200), async {
            tokio::task::yield_now().await;
            let limit = MAX_IN_FLIGHT_POLLING as usize;
            let mut requests: Vec<InFlight> = (0..limit).map(|_| request()).collect();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!asleep(), "{limit} in flight: polling");
            requests.push(request());
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(asleep(), "{} in flight: asleep", limit + 1);
            // Their ends are work, and one window cut short by the load
            // leaves polling on (it takes most of the last 8 to stop it).
            requests.clear();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!asleep(), "none in flight: polling again");
        });
    }

    #[test]
    fn a_zero_window_never_polls() {
        beside_poller(Duration::ZERO, async {
            busy();
            tokio::task::yield_now().await;
            assert!(!IDLE.with(|idle| idle.get().is_some()));
        });
    }
}
