//! The one wasmtime `Engine` of the process and how components get compiled.
//!
//! Instances come from a pooling allocator sized from one number, the most
//! plugin instances alive at once; a semaphore in front of it (see
//! `PluginRuntime`) makes callers wait for a slot instead of failing. An epoch
//! ticker thread gives every call a CPU deadline; it sleeps while no instance
//! is alive (see [`Ticker`]). Compiled components are
//! cached on disk, keyed by the file's sha256 and the engine's compatibility
//! hash, so a restart does not recompile unchanged plugins.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread::Thread;
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Linear memory per slot kept resident between instances: a typical
/// adapter's whole memory (stack, data and heap of one request).
const KEEP_RESIDENT: usize = 4 << 20;

/// Sizing and limits of the plugin sandbox.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Plugin instances alive at once (a stream holds one for its lifetime).
    pub max_instances: u32,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// CPU time one plugin call may take.
    pub call_deadline: Duration,
    /// How long a call waits for a free instance slot before it is refused
    /// (503): without it, a full house of long streams stalls everyone.
    pub queue_deadline: Duration,
    /// Ready instances each plugin keeps for the next requests (0: none,
    /// the default: with serving lanes, a spare made on the request's own
    /// thread saves nothing measurable, see `spares`).
    pub spare_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instances: 256,
            memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(250),
            queue_deadline: Duration::from_secs(10),
            spare_instances: 0,
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        (self.call_deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// Builds the engine. Its epochs advance only while a [`Ticker`] runs.
pub fn build(limits: &Limits) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.max_wasm_stack(512 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(limits)));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

/// A Rust component built for wasm32-wasip2 holds its own module plus WASI
/// adapter shims: a handful of core instances, two memories and a few tables.
///
/// Resetting a used slot is the pool's main per-request cost. By default it
/// `madvise`s the memory away, and every `madvise` flushes the TLB on all
/// cores: a quarter of the gateway's CPU under load on a 2-core VM. Instead,
/// the first few MiB stay resident and the kernel's `PAGEMAP_SCAN` (Linux
/// 6.7+; older kernels fall back) names the pages a request dirtied, which
/// are restored by copy. That took throughput at concurrency 32 from 0.35× to
/// 0.60× of a bare proxy (`just bench`).
fn pool(limits: &Limits) -> PoolingAllocationConfig {
    let n = limits.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .max_core_instances_per_component(16)
        .total_memories(n * 2)
        .max_memories_per_component(4)
        .total_tables(n * 4)
        .max_tables_per_component(8)
        .total_stacks(n)
        .max_memory_size(limits.memory_bytes)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .decommit_batch_size(16);
    pool
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`], which is
/// what makes a plugin call's deadline expire.
///
/// It ticks only while some plugin instance is alive (an instance slot is
/// taken) and sleeps otherwise, so an idle gateway wakes no thread at all:
/// ticking every 5 ms cost an idle gateway about 1% of a core on the
/// development VM, 200 wake-ups a second. The first slot taken after a quiet
/// spell wakes it ([`Ticker::instance_started`]). A deadline set while it
/// slept counts from its first tick after waking, at most one tick late.
pub struct Ticker {
    shared: Arc<TickerState>,
    thread: Thread,
}

struct TickerState {
    asleep: AtomicBool,
    stop: AtomicBool,
}

impl Ticker {
    /// Starts ticking `engine` while fewer than `total` of `slots` are free.
    /// The thread holds only a weak reference to the engine and ends with it,
    /// or when the ticker is dropped.
    pub fn start(engine: &Engine, slots: Arc<Semaphore>, total: usize) -> Result<Ticker> {
        let shared = Arc::new(TickerState {
            asleep: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let state = shared.clone();
        let weak = engine.weak();
        let idle = move || slots.available_permits() >= total;
        let thread = std::thread::Builder::new()
            .name("tollgate-epoch".into())
            .spawn(move || tick(weak, &state, idle))
            .context("spawning the epoch ticker thread")?
            .thread()
            .clone();
        Ok(Ticker { shared, thread })
    }

    /// Tells the ticker an instance slot was just taken: wakes it if it sleeps.
    pub fn instance_started(&self) {
        // Pairs with the fence in `tick`: either this sees `asleep`, or the
        // ticker sees the slot taken before it parks.
        fence(Ordering::SeqCst);
        if self.shared.asleep.load(Ordering::Relaxed) {
            self.thread.unpark();
        }
    }

    #[cfg(test)]
    fn is_asleep(&self) -> bool {
        self.shared.asleep.load(Ordering::SeqCst)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The ticker thread's loop: tick, and park whenever `idle` says no
/// instance is alive.
fn tick(engine: wasmtime::EngineWeak, state: &TickerState, idle: impl Fn() -> bool) {
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.increment_epoch();
        drop(engine);
        std::thread::sleep(EPOCH_TICK);
        if idle() {
            state.asleep.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            while idle() && !state.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            state.asleep.store(false, Ordering::SeqCst);
        }
    }
}

/// Lowercase hex sha256 of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles a component, or loads the artifact a previous run cached for the
/// same bytes and the same engine. Blocking: call it off the async runtime.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    cache_dir: Option<&Path>,
) -> Result<Component> {
    let cached = cache_dir.map(|dir| cache_path(engine, dir, digest));
    if let Some(path) = cached.as_deref().filter(|p| p.exists())
        && let Some(component) = from_cache(engine, path)
    {
        return Ok(component);
    }
    let Some(path) = cached else {
        return on_own_thread(|| new_component(engine, bytes));
    };
    let unstored = on_own_thread(|| {
        let component = new_component(engine, bytes)?;
        match store_artifact(&component, &path) {
            Ok(()) => Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e:#}");
                Ok(Some(component))
            }
        }
    })?;
    if let Some(component) = unstored {
        return Ok(component);
    }
    // Run from the file just written, as a later start would: its code is
    // then mapped from disk and paged in as used, where the freshly compiled
    // copy would sit whole in anonymous memory.
    match from_cache(engine, &path) {
        Some(component) => Ok(component),
        None => on_own_thread(|| new_component(engine, bytes)),
    }
}

fn new_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    Component::new(engine, bytes).map_err(anyhow::Error::from)
}

/// Runs a compile on a thread of its own that ends with it.
///
/// The compiler takes tens of megabytes of scratch memory, and the
/// allocator keeps a thread's freed pages with that thread. Compiling on a
/// thread that ends (and on that one thread only: wasmtime is built without
/// its parallel compilation, whose worker threads live on) returns them all.
/// A first start, which compiles every bundled plugin, idled at 44-52 MB
/// (21-26 MB from the cache); now at 37-39 MB.
fn on_own_thread<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let compiler = std::thread::Builder::new()
            .name("tollgate-compile".into())
            .spawn_scoped(scope, work)
            .context("spawning the compiler thread")?;
        compiler
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the compiler panicked on this file")))
    })
}

/// The artifact at `path`, or `None` (with a warning) when it is unusable.
fn from_cache(engine: &Engine, path: &Path) -> Option<Component> {
    if !verified(path) {
        tracing::warn!(path = %path.display(), "a compiled cache entry does not match the digest written with it; compiling again");
        return None;
    }
    // SAFETY: the file is byte for byte an artifact this gateway serialized
    // (its sha256 matches the one stored beside it when it was written),
    // named by the source's digest and this engine's compatibility hash; a
    // mismatched engine is still rejected by wasmtime's header checks.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unusable compiled cache entry: {e}");
            None
        }
    }
}

/// Where the sha256 of an artifact is kept: beside it.
fn digest_path(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}

/// Whether the artifact is the one its digest was written for. Compiled
/// code is loaded unchecked by wasmtime, so a file damaged on disk (or an
/// older cache entry with no digest) is compiled again, not run. This
/// guards against damage, not against someone who can write the data
/// folder: they could write the digest too.
fn verified(artifact: &Path) -> bool {
    let Ok(expected) = std::fs::read_to_string(digest_path(artifact)) else {
        return false;
    };
    std::fs::read(artifact).is_ok_and(|bytes| digest(&bytes) == expected.trim())
}

fn cache_path(engine: &Engine, dir: &Path, digest: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

/// Writes to a temporary name and renames, so a crash never leaves half a file.
fn store_artifact(component: &Component, path: &Path) -> Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The digest first: an artifact in place always has its digest beside
    // it, and a crash between the two leaves one that fails to verify.
    let sum = digest_path(path).with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&sum, digest(&bytes))?;
    std::fs::rename(&sum, digest_path(path))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// `(module (func (export "spin") (loop (br 0))))`
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // func 0 has type 0
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop { br 0 }
    ];

    /// The smallest valid component: `(component)`.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    fn artifacts(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_compiled_component_is_cached_and_the_next_start_loads_it() {
        let engine = build(&Limits::default()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        compile(&engine, EMPTY_COMPONENT, "d1", Some(&dir)).unwrap();
        let mut written = artifacts(&dir);
        written.sort();
        assert_eq!(
            written.len(),
            2,
            "an artifact and its digest, no temporary file: {written:?}"
        );
        assert!(written[0].extension().is_some_and(|e| e == "cwasm"));
        assert!(written[1].to_string_lossy().ends_with(".cwasm.sha256"));
        // Bytes that cannot compile, under the digest of the cached ones:
        // only a load from the cache can succeed.
        compile(&engine, b"not wasm", "d1", Some(&dir)).expect("loaded from the cache");
    }

    #[test]
    fn a_damaged_cache_entry_is_compiled_again_not_run() {
        let engine = build(&Limits::default()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        compile(&engine, EMPTY_COMPONENT, "d5", Some(&dir)).unwrap();
        let artifact = artifacts(&dir)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .unwrap();
        let mut bytes = std::fs::read(&artifact).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&artifact, &bytes).unwrap();
        assert!(!verified(&artifact));
        // Only the source can serve now: a damaged entry is not loaded.
        assert!(compile(&engine, b"not wasm", "d5", Some(&dir)).is_err());
        compile(&engine, EMPTY_COMPONENT, "d5", Some(&dir)).expect("compiled again");
        assert!(verified(&artifact), "and the entry rewritten whole");
        // An entry without its digest (an older cache) is compiled again too.
        std::fs::remove_file(digest_path(&artifact)).unwrap();
        assert!(compile(&engine, b"not wasm", "d5", Some(&dir)).is_err());
    }

    #[test]
    fn a_file_that_does_not_compile_is_an_error_and_nothing_is_cached() {
        let engine = build(&Limits::default()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        assert!(compile(&engine, b"not wasm", "d2", Some(&dir)).is_err());
        assert!(
            compile(&engine, SPIN, "d3", None).is_err(),
            "a core module is no component"
        );
        assert!(artifacts(&dir).is_empty());
        compile(&engine, EMPTY_COMPONENT, "d4", None).expect("compiles without a cache");
    }

    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !condition() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_ticker_sleeps_while_no_instance_is_alive_and_deadlines_still_fire() {
        let engine = build(&Limits::default()).unwrap();
        let slots = Arc::new(Semaphore::new(2));
        let ticker = Ticker::start(&engine, slots.clone(), 2).unwrap();
        eventually("the ticker sleeps with every slot free", || {
            ticker.is_asleep()
        });

        // Take a slot as the plugin host does, then run a guest that never
        // returns: only a ticking epoch can stop it.
        let slot = slots.clone().try_acquire_owned().unwrap();
        ticker.instance_started();
        let (done, outcome) = std::sync::mpsc::channel();
        let spinning = engine.clone();
        std::thread::spawn(move || {
            let module = wasmtime::Module::new(&spinning, SPIN).unwrap();
            let mut store = wasmtime::Store::new(&spinning, ());
            store.set_epoch_deadline(2);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let spin = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .unwrap();
            let trap = spin.call(&mut store, ()).unwrap_err();
            let _ = done.send(trap.downcast_ref::<wasmtime::Trap>().copied());
        });
        let trap = outcome
            .recv_timeout(Duration::from_secs(10))
            .expect("the deadline never fired: the ticker did not wake");
        assert_eq!(trap, Some(wasmtime::Trap::Interrupt));
        assert!(!ticker.is_asleep(), "a slot is taken: the ticker ticks");

        drop(slot);
        eventually("the ticker sleeps again once the slot is free", || {
            ticker.is_asleep()
        });
    }
}
