//! The one wasmtime `Engine` of the process and how components get compiled.
//!
//! Instances come from a pooling allocator sized from one number, the most
//! plugin instances alive at once; a semaphore in front of it (see
//! `PluginRuntime`) makes callers wait for a slot instead of failing. An epoch
//! ticker thread gives every call a CPU deadline. Compiled components are
//! cached on disk, keyed by the file's sha256 and the engine's compatibility
//! hash, so a restart does not recompile unchanged plugins.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
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

/// Builds the engine and starts its epoch ticker.
pub fn build(limits: &Limits) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.max_wasm_stack(512 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(limits)));
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
    start_ticker(&engine);
    Ok(engine)
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

/// The ticker holds only a weak reference, so it ends with the engine.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("tollgate-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
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
    let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
    let Some(path) = cached else {
        return Ok(component);
    };
    if let Err(e) = store_artifact(&component, &path) {
        tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e:#}");
        return Ok(component);
    }
    // Run from the file just written, as a later start would: its code is
    // then mapped from disk and paged in as used, where the freshly
    // compiled copy would sit whole in anonymous memory.
    Ok(from_cache(engine, &path).unwrap_or(component))
}

/// The artifact at `path`, or `None` (with a warning) when it is unusable.
fn from_cache(engine: &Engine, path: &Path) -> Option<Component> {
    // SAFETY: the cache folder holds only artifacts this gateway serialized
    // itself, named by the source's digest and this engine's compatibility
    // hash; a mismatched or damaged file is rejected by wasmtime's header
    // checks and the caller compiles instead.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unusable compiled cache entry: {e}");
            None
        }
    }
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
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
