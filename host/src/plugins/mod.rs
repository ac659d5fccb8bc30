//! The plugin runtime: loads adapter components, and hands out sandboxed
//! instances of them, one per attempt.
//!
//! Lifecycle: each `.wasm` is compiled once (off the async runtime, cached on
//! disk), pre-linked once (`instantiate_pre`, which checks its imports), and
//! smoke-tested: one instance finds and type-checks the exported functions
//! (see `exports`) and answers `info`. Per request, an instance
//! comes from the plugin's stock of spares (made ahead on the same serving
//! lane, see `spares`) or from the pooling allocator, and is dropped when the
//! attempt ends; no instance serves two requests. A semaphore keeps requests
//! from asking the pool for more slots than it has.
//!
//! A [`PluginRuntime`] is one generation of plugins. A reload builds the next
//! generation on the same [`PluginHost`] (engine, linker, instance slots):
//! files whose digest is unchanged are reused as they are, and a file that
//! fails to load leaves its previous version in service, with the error
//! recorded. Requests hold the generation they started with, so a swap never
//! disturbs one in flight.

pub mod bindings;
pub(crate) mod bundled;
mod calls;
pub mod engine;
mod exports;
pub mod load_error;
mod policy;
mod sandbox;
mod session;
mod spares;

use crate::clock::{Clock, SystemClock};
use anyhow::{Context, Result};
use bindings::PluginInfo;
use calls::Calls;
use exports::{AdapterExports, NativeExports, PolicyExports};
pub use load_error::LoadError;
use sandbox::Sandbox;
pub use session::{Session, StreamSession};
use spares::{Ready, Spares};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    Bundled,
    File(PathBuf),
}

/// What a plugin is, by the interface it exports, with that interface's
/// functions (the host probes each component).
pub enum Kind {
    Adapter(AdapterExports),
    Policy(PolicyExports),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Adapter(_) => "adapter",
            Kind::Policy(_) => "policy",
        }
    }
}

/// A compiled, pre-linked plugin, ready to instantiate.
pub struct LoadedPlugin {
    pub name: Arc<str>,
    pub source: PluginSource,
    pub digest: String,
    pub info: PluginInfo,
    /// The version of the WIT package the plugin was built against.
    pub wit_version: String,
    /// When this version was loaded (Unix ms).
    pub loaded_at: u64,
    pub kind: Kind,
    /// The client protocols an adapter takes as they are (WIT `native`),
    /// with the functions that do it; `None` for most adapters.
    pub native: Option<Native>,
    /// The component, linked: what each instance is made from.
    pre: InstancePre<Sandbox>,
    /// Whether its calls need a fiber (see `calls`).
    calls: Calls,
    /// Instances made ahead of need (see `spares`).
    spares: Spares,
    /// Its successful calls (`tollgate_plugin_calls_total`), kept here so
    /// that a call does not look its counter up.
    calls_ok: prometheus_client::metrics::counter::Counter,
}

/// An adapter's `native` interface, when it names protocols.
pub struct Native {
    pub protocols: Vec<String>,
    exports: NativeExports,
}

impl LoadedPlugin {
    /// Whether it imports WASI (it was built with Rust's `std`), so that its
    /// calls run on a fiber of their own (see `calls`).
    pub fn uses_wasi(&self) -> bool {
        self.calls == Calls::OnFiber
    }

    /// Whether this adapter takes requests in `protocol` as they are.
    pub fn speaks(&self, protocol: &str) -> bool {
        self.native
            .as_ref()
            .is_some_and(|n| n.protocols.iter().any(|p| p == protocol))
    }
}

/// Adapters are the plugins most of the host deals with.
pub type LoadedAdapter = LoadedPlugin;

/// Why a plugin call failed, as opposed to the plugin answering `err`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}` exceeded its CPU deadline")]
    Deadline { plugin: Arc<str> },
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: Arc<str>, reason: String },
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate { plugin: Arc<str>, reason: String },
    #[error(
        "every plugin instance slot stayed taken for {waited:?} (TOLLGATE_MAX_INSTANCES); try again shortly"
    )]
    Busy {
        plugin: Arc<str>,
        waited: std::time::Duration,
    },
}

impl PluginError {
    /// The outcome `tollgate_plugin_calls_total` counts it as.
    pub fn label(&self) -> &'static str {
        match self {
            PluginError::Deadline { .. } => "deadline",
            PluginError::Trap { .. } => "trap",
            PluginError::Instantiate { .. } => "instantiate",
            PluginError::Busy { .. } => "busy",
        }
    }

    /// Counts this failure against the plugin that made it.
    fn counted(self) -> Self {
        let plugin = match &self {
            PluginError::Deadline { plugin }
            | PluginError::Trap { plugin, .. }
            | PluginError::Instantiate { plugin, .. }
            | PluginError::Busy { plugin, .. } => plugin,
        };
        crate::metrics::global().plugin_fault(plugin, self.label());
        self
    }

    fn instantiate(plugin: &Arc<str>, reason: impl std::fmt::Display) -> Self {
        PluginError::Instantiate {
            plugin: plugin.clone(),
            reason: format!("{reason:#}"),
        }
    }

    fn from_trap(plugin: &Arc<str>, error: wasmtime::Error, last_words: Option<String>) -> Self {
        Self::classify(plugin, error, last_words).counted()
    }

    fn classify(plugin: &Arc<str>, error: wasmtime::Error, last_words: Option<String>) -> Self {
        let plugin = plugin.clone();
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PluginError::Deadline { plugin },
            trap => {
                let mut reason = trap.map_or_else(|| format!("{error:#}"), |t| t.to_string());
                if let Some(words) = last_words {
                    reason = format!("{reason} ({words})");
                }
                PluginError::Trap { plugin, reason }
            }
        }
    }
}

/// A plugin that failed to load, kept for `tollgate check`, `/admin/plugins`
/// and the logs.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub name: String,
    pub source: PluginSource,
    pub error: String,
    /// Whether an earlier version of it stays in service.
    pub kept_previous: bool,
}

/// What every generation of plugins shares.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: engine::Limits,
    slots: Arc<Semaphore>,
    /// Advances the engine's epoch while any slot is taken.
    ticker: engine::Ticker,
    cache_dir: Option<PathBuf>,
    /// The keys every instance scrubs from its plugin's log lines, set by
    /// the generation in service ([`PluginRuntime::use_secrets`]).
    secrets: Arc<arc_swap::ArcSwap<crate::redact::Redactor>>,
}

/// One generation of loaded plugins.
pub struct PluginRuntime {
    host: Arc<PluginHost>,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Bundled plugins a file overrides, kept to be reused when it goes.
    bundled_shadowed: Vec<Arc<LoadedPlugin>>,
    failures: Vec<LoadFailure>,
}

impl PluginRuntime {
    /// Loads the bundled adapters, then every `*.wasm` in `plugins_dir`
    /// (a file overrides the bundled adapter of the same name). A file that
    /// fails to load is recorded in [`PluginRuntime::failures`] and skipped;
    /// a bundled adapter it meant to override stays in service.
    pub async fn load(
        limits: engine::Limits,
        plugins_dir: Option<&Path>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let host = Arc::new(PluginHost::new(limits, cache_dir)?);
        Self::generation(host, plugins_dir, None).await
    }

    /// One plugin, loaded from `bytes` exactly as the gateway loads a file
    /// (the same checks, under the same limits), on a host of its own with
    /// no bundled plugins and no compile cache: what `tollgate plugin check`
    /// and `tollgate plugin test` run. The outer error is the host failing
    /// to start; the inner one is the file's verdict.
    pub async fn single(
        limits: engine::Limits,
        name: &str,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<Result<(Self, Arc<LoadedPlugin>), LoadError>> {
        let host = Arc::new(PluginHost::new(limits, None)?);
        let source = PluginSource::File(path.to_owned());
        let plugin = match host.load_one(name, source, bytes).await {
            Ok(plugin) => plugin,
            Err(e) => return Ok(Err(e)),
        };
        let runtime = PluginRuntime {
            host,
            plugins: BTreeMap::from([(name.to_owned(), plugin.clone())]),
            bundled_shadowed: Vec::new(),
            failures: Vec::new(),
        };
        Ok(Ok((runtime, plugin)))
    }

    /// The next generation from the plugins folder as it is now: unchanged
    /// files are reused, changed ones compiled (off the request path), and a
    /// file that fails keeps its previous version in service.
    pub async fn reload(&self, plugins_dir: Option<&Path>) -> Result<Self> {
        Self::generation(self.host.clone(), plugins_dir, Some(self)).await
    }

    async fn generation(
        host: Arc<PluginHost>,
        plugins_dir: Option<&Path>,
        previous: Option<&PluginRuntime>,
    ) -> Result<Self> {
        let _compiling = crate::memory::Compiling::start();
        let mut runtime = PluginRuntime {
            host,
            plugins: BTreeMap::new(),
            bundled_shadowed: Vec::new(),
            failures: Vec::new(),
        };
        for (name, bytes) in bundled::BUNDLED {
            let reused = previous.and_then(|p| p.bundled(name)).cloned();
            let adapter = match reused {
                Some(adapter) => adapter,
                None => runtime
                    .host
                    .load_one(name, PluginSource::Bundled, bytes.to_vec())
                    .await
                    .with_context(|| format!("bundled plugin `{name}` failed to load"))?,
            };
            runtime.plugins.insert(name.to_string(), adapter);
        }
        if let Some(dir) = plugins_dir {
            runtime.load_dir(dir, previous).await?;
        }
        Ok(runtime)
    }

    fn bundled(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .values()
            .chain(self.bundled_shadowed.iter())
            .find(|a| &*a.name == name && a.source == PluginSource::Bundled)
    }

    async fn load_dir(&mut self, dir: &Path, previous: Option<&PluginRuntime>) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading plugins folder {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let source = PluginSource::File(path.clone());
            // The version this file had in the previous generation, if any.
            let earlier = previous
                .and_then(|p| p.plugins.get(&name))
                .filter(|a| a.source == source);
            let loaded = match std::fs::read(&path) {
                Ok(bytes) => match earlier {
                    Some(adapter) if adapter.digest == engine::digest(&bytes) => {
                        Ok(adapter.clone())
                    }
                    _ => self
                        .host
                        .load_one(&name, source.clone(), bytes)
                        .await
                        .map_err(|e| e.to_string()),
                },
                Err(e) => Err(format!("reading the file: {e}")),
            };
            match loaded {
                Ok(adapter) => {
                    if earlier.is_none_or(|e| !Arc::ptr_eq(e, &adapter)) {
                        tracing::info!(plugin = %name, path = %path.display(), digest = %&adapter.digest[..12], "loaded plugin");
                    }
                    self.replace(name, adapter);
                }
                Err(error) => {
                    let kept_previous = earlier.is_some();
                    tracing::error!(plugin = %name, path = %path.display(), kept_previous, "plugin rejected: {error}");
                    if let Some(earlier) = earlier {
                        self.replace(name.clone(), earlier.clone());
                    }
                    self.failures.push(LoadFailure {
                        name,
                        source,
                        error,
                        kept_previous,
                    });
                }
            }
        }
        Ok(())
    }

    /// Puts `adapter` in service under `name`, remembering a bundled one it
    /// shadows so the next generation can reuse it.
    fn replace(&mut self, name: String, plugin: Arc<LoadedPlugin>) {
        if let Some(old) = self.plugins.insert(name, plugin)
            && old.source == PluginSource::Bundled
        {
            self.bundled_shadowed.push(old);
        }
    }

    /// A fresh instance of `adapter` for one attempt; waits while every
    /// instance slot is taken.
    pub async fn session(&self, adapter: &Arc<LoadedAdapter>) -> Result<Session, PluginError> {
        self.host.session(adapter).await
    }

    pub fn adapter(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .get(name)
            .filter(|p| matches!(p.kind, Kind::Adapter(_)))
    }

    pub fn policy(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins
            .get(name)
            .filter(|p| matches!(p.kind, Kind::Policy(_)))
    }

    /// The instance slots taken now, by calls and open streams: zero
    /// whenever nothing is being served, or something leaked.
    pub fn slots_in_use(&self) -> usize {
        let limits = &self.host.limits;
        (limits.max_instances as usize).saturating_sub(self.host.slots.available_permits())
    }

    /// Every plugin in service, adapters and policies.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// The provider keys to scrub from plugins' log lines from now on.
    pub fn use_secrets(&self, redactor: crate::redact::Redactor) {
        self.host.secrets.store(Arc::new(redactor));
    }
}

impl PluginHost {
    fn new(limits: engine::Limits, cache_dir: Option<PathBuf>) -> Result<Self> {
        let engine = engine::build(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        bindings::AdapterPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the tollgate host interface")?;
        let slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        let ticker = engine::Ticker::start(&engine, slots.clone(), limits.max_instances as usize)?;
        Ok(PluginHost {
            engine,
            linker,
            limits,
            slots,
            ticker,
            cache_dir,
            secrets: Default::default(),
        })
    }

    async fn load_one(
        self: &Arc<Self>,
        name: &str,
        source: PluginSource,
        bytes: Vec<u8>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        load_error::sniff(&bytes)?;
        let digest = engine::digest(&bytes);
        let engine = self.engine.clone();
        let key = digest.clone();
        let cache_dir = self.cache_dir.clone();
        // A panic in the compiler (a hostile file) ends only its blocking
        // task; it comes back here as an error and is reported.
        let component = tokio::task::spawn_blocking(move || {
            engine::compile(&engine, &bytes, &key, cache_dir.as_deref())
        })
        .await
        .map_err(|_| LoadError::CompilerPanic)?
        .map_err(LoadError::compiling)?;
        load_error::check_version(&self.engine, &component)?;
        let wit_version = wit_version(&self.engine, &component).unwrap_or_default();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Imports(format!("{e:#}")))?;
        let name: Arc<str> = Arc::from(name);
        let calls = Calls::of(&component);
        let (kind, info, native) = self.smoke_test(&name, &pre, calls).await?;
        Ok(Arc::new(LoadedPlugin {
            source,
            digest,
            wit_version,
            loaded_at: SystemClock.now_ms(),
            info,
            kind,
            native,
            pre,
            calls,
            spares: Spares::new(self.limits.spare_instances),
            calls_ok: crate::metrics::global().plugin_ok(&name),
            name,
        }))
    }

    /// Instantiates once, under the same limits as a request: finds and
    /// type-checks the exported interfaces' functions, and calls `info`
    /// (and an adapter's `native.protocols`, when it has them).
    async fn smoke_test(
        &self,
        name: &Arc<str>,
        pre: &InstancePre<Sandbox>,
        calls: Calls,
    ) -> Result<(Kind, PluginInfo, Option<Native>), LoadError> {
        let adapter = exports::offers(pre.component(), exports::ADAPTER);
        if !adapter && !exports::offers(pre.component(), exports::POLICY) {
            return Err(LoadError::WrongWorld {
                exports: load_error::export_names(&self.engine, pre.component()),
            });
        }
        let slot = self
            .slot(name)
            .await
            .map_err(|e| LoadError::Instantiate(fault_reason(e)))?;
        let Ready {
            mut store,
            instance,
            slot: _slot,
        } = self
            .fresh(name, pre, calls, slot)
            .await
            .map_err(|e| LoadError::Instantiate(fault_reason(e)))?;
        let (kind, info) = if adapter {
            let exports = AdapterExports::checked(&mut store, &instance)?;
            let info = exports.info(&mut store, &instance);
            (Kind::Adapter(exports), info)
        } else {
            let exports = PolicyExports::checked(&mut store, &instance)?;
            let info = exports.info(&mut store, &instance);
            (Kind::Policy(exports), info)
        };
        let first_call = |reason: String| LoadError::FirstCall {
            function: "info".into(),
            reason,
        };
        let info = info.map_err(|e| first_call(format!("{e:#}")))?;
        let info = calls
            .call(info, &mut store, ())
            .await
            .map(|(info,)| info)
            .map_err(|e| {
                first_call(fault_reason(PluginError::from_trap(
                    name,
                    e,
                    store.data().last_words(),
                )))
            })?;
        let native = if adapter && exports::offers(pre.component(), exports::NATIVE) {
            native(name, &mut store, &instance, calls).await?
        } else {
            None
        };
        Ok((kind, info, native))
    }

    /// A store for one instance, with the sandbox's limits and deadline.
    fn store(&self, name: &Arc<str>) -> Store<Sandbox> {
        let sandbox = Sandbox::new(name.clone(), self.limits.memory_bytes, self.secrets.clone());
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store
    }

    /// A free instance slot, waiting at most the queue deadline for one.
    async fn slot(&self, plugin: &Arc<str>) -> Result<OwnedSemaphorePermit, PluginError> {
        if let Some(slot) = self.try_slot() {
            return Ok(slot);
        }
        let waited = self.limits.queue_deadline;
        let slot = tokio::time::timeout(waited, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                PluginError::Busy {
                    plugin: plugin.clone(),
                    waited,
                }
                .counted()
            })?
            .expect("the instance semaphore is never closed");
        self.ticker.instance_started();
        Ok(slot)
    }

    /// A free instance slot, if there is one now.
    fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        self.ticker.instance_started();
        Some(slot)
    }

    /// A new instance of the plugin `name`, made from `pre`, in `slot`.
    async fn fresh(
        &self,
        name: &Arc<str>,
        pre: &InstancePre<Sandbox>,
        calls: Calls,
        slot: OwnedSemaphorePermit,
    ) -> Result<Ready, PluginError> {
        let mut store = self.store(name);
        let instance = calls
            .instantiate(pre, &mut store)
            .await
            .map_err(|e| PluginError::instantiate(name, e).counted())?;
        Ok(Ready {
            store,
            instance,
            slot,
        })
    }

    /// An instance of `plugin` for one attempt or call: a spare when one is
    /// ready, else a new one (waiting while every slot is taken). Either way
    /// the stock of spares is topped up on this lane.
    async fn ready(self: &Arc<Self>, plugin: &Arc<LoadedPlugin>) -> Result<Ready, PluginError> {
        let spare = plugin.spares.take();
        spares::refill(self, plugin);
        match spare {
            Some(ready) => Ok(ready),
            None => {
                let slot = self.slot(&plugin.name).await?;
                self.fresh(&plugin.name, &plugin.pre, plugin.calls, slot)
                    .await
            }
        }
    }

    async fn session(
        self: &Arc<Self>,
        adapter: &Arc<LoadedAdapter>,
    ) -> Result<Session, PluginError> {
        if !matches!(adapter.kind, Kind::Adapter(_)) {
            return Err(PluginError::instantiate(
                &adapter.name,
                "it is not an adapter",
            ));
        }
        let ready = self.ready(adapter).await?;
        Ok(Session::new(
            adapter.clone(),
            ready,
            self.limits.deadline_ticks(),
        ))
    }
}

/// An adapter's `native` interface, type-checked, and the protocols it
/// names (`None` when it names none).
async fn native(
    name: &Arc<str>,
    store: &mut Store<Sandbox>,
    instance: &wasmtime::component::Instance,
    calls: Calls,
) -> Result<Option<Native>, LoadError> {
    let exports = NativeExports::checked(store, instance)?;
    let first_call = |reason: String| LoadError::FirstCall {
        function: "native.protocols".into(),
        reason,
    };
    let protocols = exports
        .protocols(store, instance)
        .map_err(|e| first_call(format!("{e:#}")))?;
    let (protocols,) = calls.call(protocols, store, ()).await.map_err(|e| {
        first_call(fault_reason(PluginError::from_trap(
            name,
            e,
            store.data().last_words(),
        )))
    })?;
    Ok((!protocols.is_empty()).then_some(Native { protocols, exports }))
}

/// A fault's reason without the plugin's name, which the load error's
/// context already gives.
fn fault_reason(fault: PluginError) -> String {
    match fault {
        PluginError::Deadline { .. } => "it exceeded its CPU deadline".into(),
        PluginError::Trap { reason, .. } | PluginError::Instantiate { reason, .. } => reason,
        busy @ PluginError::Busy { .. } => busy.to_string(),
    }
}

/// The version of the `tollgate:plugin` interface a component exports, read
/// from its export names (`tollgate:plugin/adapter@0.1.0`).
fn wit_version(engine: &Engine, component: &wasmtime::component::Component) -> Option<String> {
    component
        .component_type()
        .exports(engine)
        .find_map(|(name, _)| {
            ["tollgate:plugin/adapter@", "tollgate:plugin/policy@"]
                .iter()
                .find_map(|prefix| name.strip_prefix(prefix).map(str::to_owned))
        })
}
