//! The plugin runtime: loads adapter components, and hands out sandboxed
//! instances of them, one per attempt.
//!
//! Lifecycle: each `.wasm` is compiled once (off the async runtime, cached on
//! disk), pre-linked once (`instantiate_pre`, which checks its imports and
//! exports), and smoke-tested with a call to `info`. Per request, an instance
//! comes from the pooling allocator in a few microseconds and is dropped when
//! the attempt ends; a semaphore keeps requests from asking the pool for more
//! slots than it has.

pub mod bindings;
mod bundled;
pub mod engine;
mod sandbox;
mod session;

use anyhow::{Context, Result};
use bindings::{AdapterPluginPre, PluginInfo};
use sandbox::Sandbox;
pub use session::{Session, StreamSession};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    Bundled,
    File(PathBuf),
}

/// A compiled, pre-linked adapter, ready to instantiate.
pub struct LoadedAdapter {
    pub name: Arc<str>,
    pub source: PluginSource,
    pub digest: String,
    pub info: PluginInfo,
    pre: AdapterPluginPre<Sandbox>,
}

/// Why a plugin call failed, as opposed to the plugin answering `err`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}` exceeded its CPU deadline")]
    Deadline { plugin: Arc<str> },
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: Arc<str>, reason: String },
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate { plugin: Arc<str>, reason: String },
}

impl PluginError {
    fn from_trap(plugin: &Arc<str>, error: wasmtime::Error, last_words: Option<String>) -> Self {
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

/// A plugin that failed to load, kept for `tollgate check` and the logs.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub name: String,
    pub source: PluginSource,
    pub error: String,
}

pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: engine::Limits,
    slots: Arc<Semaphore>,
    adapters: BTreeMap<String, Arc<LoadedAdapter>>,
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
        let engine = engine::build(&limits)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        bindings::AdapterPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the tollgate host interface")?;
        let slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        let mut runtime = PluginRuntime {
            engine,
            linker,
            limits,
            slots,
            adapters: BTreeMap::new(),
            failures: Vec::new(),
        };
        for (name, bytes) in bundled::BUNDLED {
            let adapter = runtime
                .load_one(
                    name,
                    PluginSource::Bundled,
                    bytes.to_vec(),
                    cache_dir.clone(),
                )
                .await
                .with_context(|| format!("bundled plugin `{name}` failed to load"))?;
            runtime.adapters.insert(name.to_string(), adapter);
        }
        if let Some(dir) = plugins_dir {
            runtime.load_dir(dir, cache_dir).await?;
        }
        Ok(runtime)
    }

    async fn load_dir(&mut self, dir: &Path, cache_dir: Option<PathBuf>) -> Result<()> {
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
            let loaded = match std::fs::read(&path) {
                Ok(bytes) => {
                    self.load_one(&name, source.clone(), bytes, cache_dir.clone())
                        .await
                }
                Err(e) => Err(anyhow::Error::from(e).context("reading the file")),
            };
            match loaded {
                Ok(adapter) => {
                    tracing::info!(plugin = %name, path = %path.display(), "loaded plugin");
                    self.adapters.insert(name, adapter);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::error!(plugin = %name, path = %path.display(), "plugin rejected: {error}");
                    self.failures.push(LoadFailure {
                        name,
                        source,
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    async fn load_one(
        &self,
        name: &str,
        source: PluginSource,
        bytes: Vec<u8>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Arc<LoadedAdapter>> {
        let digest = engine::digest(&bytes);
        let engine = self.engine.clone();
        let key = digest.clone();
        let component = tokio::task::spawn_blocking(move || {
            engine::compile(&engine, &bytes, &key, cache_dir.as_deref())
        })
        .await
        .context("the compiler thread panicked")?
        .context("not a valid WebAssembly component")?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component's imports do not match what the host provides")?;
        let pre = AdapterPluginPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export tollgate:plugin/adapter@0.1.0")?;
        let mut adapter = LoadedAdapter {
            name: Arc::from(name),
            source,
            digest,
            info: PluginInfo {
                name: name.to_owned(),
                version: String::new(),
                modes: Vec::new(),
            },
            pre,
        };
        adapter.info = self.smoke_test(&adapter).await?;
        Ok(Arc::new(adapter))
    }

    /// Instantiates once and calls `info`, under the same limits as a request.
    async fn smoke_test(&self, adapter: &LoadedAdapter) -> Result<PluginInfo> {
        let (mut store, bindings) = self.instantiate(adapter).await?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let result = bindings
            .tollgate_plugin_adapter()
            .call_info(&mut store)
            .await;
        result.map_err(|e| {
            let fault = PluginError::from_trap(&adapter.name, e, store.data().last_words());
            anyhow::anyhow!("calling `info` failed: {fault}")
        })
    }

    async fn instantiate(
        &self,
        adapter: &LoadedAdapter,
    ) -> Result<(Store<Sandbox>, bindings::AdapterPlugin), PluginError> {
        let sandbox = Sandbox::new(adapter.name.clone(), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let bindings = adapter
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PluginError::Instantiate {
                plugin: adapter.name.clone(),
                reason: format!("{e:#}"),
            })?;
        Ok((store, bindings))
    }

    /// A fresh instance of `adapter` for one attempt; waits while every
    /// instance slot is taken.
    pub async fn session(&self, adapter: &Arc<LoadedAdapter>) -> Result<Session, PluginError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the instance semaphore is never closed");
        let (store, bindings) = self.instantiate(adapter).await?;
        Ok(Session::new(
            adapter.clone(),
            store,
            bindings,
            self.limits.deadline_ticks(),
            slot,
        ))
    }

    pub fn adapter(&self, name: &str) -> Option<&Arc<LoadedAdapter>> {
        self.adapters.get(name)
    }

    pub fn adapters(&self) -> impl Iterator<Item = &Arc<LoadedAdapter>> {
        self.adapters.values()
    }

    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }
}
