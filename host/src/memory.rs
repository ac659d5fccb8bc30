//! The gateway's allocator, and when it hands memory back to the system.
//!
//! The binary allocates with mimalloc. Under load, most blocks are freed on a
//! different worker thread from the one that allocated them (a task moves,
//! a body is handed on); glibc then takes the owning arena's lock, and on a
//! 2-core machine a fifth of the gateway's context switches were threads
//! sleeping on that lock. mimalloc hands such a block back without a lock.
//! Measured with `just bench`: throughput at concurrency 32 up by a fifth.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The allocator `main.rs` installs.
pub type Allocator = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: how long freed memory is kept before
/// it goes back to the system (ms; 0 returns it at once).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Scopes of compiling alive now, and the purge delay to restore after them.
static COMPILING: AtomicUsize = AtomicUsize::new(0);
static USUAL_DELAY: AtomicUsize = AtomicUsize::new(0);

/// While one is alive, freed memory goes back to the system at once.
///
/// Compiling a component (the first start, or a changed plugin) takes tens
/// of megabytes of scratch memory across the compiler's threads; kept for
/// reuse, it would leave an idle gateway at twice its size for good.
/// Serving keeps the usual delay, which saves a system call per free.
pub struct Compiling(());

impl Compiling {
    pub fn start() -> Self {
        if COMPILING.fetch_add(1, Ordering::AcqRel) == 0 {
            // SAFETY: reading and setting an option is thread-safe in mimalloc.
            let usual = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
            USUAL_DELAY.store(usual.max(0) as usize, Ordering::Release);
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
        }
        Compiling(())
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        if COMPILING.fetch_sub(1, Ordering::AcqRel) == 1 {
            let usual = USUAL_DELAY.load(Ordering::Acquire) as std::ffi::c_long;
            // SAFETY: as above; mi_collect only returns unused pages.
            unsafe {
                libmimalloc_sys::mi_collect(true);
                libmimalloc_sys::mi_option_set(PURGE_DELAY, usual);
            }
        }
    }
}
