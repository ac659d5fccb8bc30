//! Hot reload: `providers/*.yaml`, `fallbacks.yaml`, `keys.yaml` and
//! `plugins/*.wasm` are watched, and a change puts a new generation in service within a
//! second, without a restart and without dropping a request.
//!
//! The pipeline: file events are debounced (editors and `cp` write in
//! bursts; temporary names such as `.x.swp`, `x~` or `x.tmp` are ignored, so
//! writing a temp file and renaming it into place publishes atomically);
//! the plugins are reloaded on the running generation's host (unchanged
//! files reused by digest, changed ones compiled off the request path, a
//! broken one leaving its previous version in service); the catalogue is
//! loaded against them; and only if all of that succeeds is the new
//! generation swapped in. Anything rejected is logged and shown by
//! `/admin/plugins`; the previous generation keeps serving. The ledger is
//! shared by every generation, so counts carry over.

use crate::clock::{Clock, SystemClock};
use crate::config::env::Env;
use crate::config::{Catalog, ConfigError};
use crate::keys::Entry;
use crate::plugins::{LoadFailure, PluginRuntime};
use crate::route::Gateway;
use crate::state::AppState;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last file event before reloading.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// What the reloads have found, for `/admin/plugins`.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// When the catalogue in service was loaded (Unix ms).
    pub config_loaded_at: u64,
    pub last_attempt_at: Option<u64>,
    /// Why the last reload was rejected; `None` once one succeeds.
    pub config_error: Option<String>,
    /// Plugin files the last load rejected.
    pub plugin_failures: Vec<LoadFailure>,
}

impl ReloadStatus {
    pub fn started(gateway: &Gateway) -> Self {
        ReloadStatus {
            config_loaded_at: now_ms(),
            plugin_failures: gateway.plugins.failures().to_vec(),
            ..ReloadStatus::default()
        }
    }
}

/// The folders a gateway serves from.
#[derive(Debug, Clone)]
pub struct Watched {
    pub config: PathBuf,
    pub plugins: PathBuf,
}

/// Starts watching; the returned watcher must be kept alive.
pub fn watch(state: Arc<AppState>, watched: Watched) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) && event.paths.iter().any(|p| watched_file(p));
        if relevant {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&watched.config, RecursiveMode::NonRecursive)?;
    if watched.plugins.is_dir() {
        watcher.watch(&watched.plugins, RecursiveMode::NonRecursive)?;
    } else {
        tracing::info!(folder = %watched.plugins.display(), "the plugins folder does not exist; create it and restart to drop plugins in");
    }
    tokio::spawn(reload_on_change(state, watched, rx));
    Ok(watcher)
}

/// A provider fragment, the fallbacks file or a plugin, by its final name.
fn watched_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    // A mounted Kubernetes ConfigMap changes by one rename: `..data_tmp`
    // over `..data`, the symlink every file in the folder points through.
    // No file of a watched kind is touched, so that rename is the change.
    if name == "..data" {
        return true;
    }
    let temporary = name.starts_with('.') || name.ends_with('~');
    let extension = path.extension().and_then(|e| e.to_str());
    !temporary && matches!(extension, Some("yaml" | "yml" | "wasm"))
}

async fn reload_on_change(
    state: Arc<AppState>,
    watched: Watched,
    mut rx: mpsc::UnboundedReceiver<()>,
) {
    while rx.recv().await.is_some() {
        // Wait for the burst to end.
        loop {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        match reload(&state, &watched).await {
            Ok(summary) => tracing::info!("reloaded: {summary}"),
            Err(e) => tracing::error!("reload rejected; the previous version keeps serving:\n{e}"),
        }
    }
}

/// Builds the next generation from the folders as they are and swaps it in.
pub async fn reload(state: &AppState, watched: &Watched) -> Result<String, String> {
    let result = next_generation(state, watched).await;
    let mut status = state.reloads.lock().expect("reload status lock");
    status.last_attempt_at = Some(now_ms());
    match result {
        Ok((gateway, summary, keys)) => {
            // The keys are checked against those made through the API at
            // the last moment, under the keys' own lock.
            if let Err(e) = state.keys.replace_file(keys) {
                let error = format!("invalid configuration:\n{e}");
                status.config_error = Some(error.clone());
                crate::metrics::global().reloaded("rejected");
                return Err(error);
            }
            status.plugin_failures = gateway.plugins.failures().to_vec();
            status.config_error = None;
            status.config_loaded_at = now_ms();
            let outcome = if status.plugin_failures.is_empty() {
                "ok"
            } else {
                "plugin_rejected"
            };
            crate::metrics::global().reloaded(outcome);
            state.install(gateway);
            Ok(summary)
        }
        Err((error, failures)) => {
            if let Some(failures) = failures {
                status.plugin_failures = failures;
            }
            status.config_error = Some(error.clone());
            crate::metrics::global().reloaded("rejected");
            Err(error)
        }
    }
}

type Rejected = (String, Option<Vec<LoadFailure>>);

async fn next_generation(
    state: &AppState,
    watched: &Watched,
) -> Result<(Gateway, String, Vec<Entry>), Rejected> {
    let env = Env::load(Path::new(".")).map_err(|e| (format!("{e:#}"), None))?;
    let current = state.current();
    let plugins = current
        .gateway
        .plugins
        .reload(Some(&watched.plugins))
        .await
        .map_err(|e| (format!("{e:#}"), None))?;
    let failures = plugins.failures().to_vec();
    let catalog = load_catalog(&watched.config, &env, &plugins).map_err(|e| {
        (
            format!("invalid configuration:\n{e}"),
            Some(failures.clone()),
        )
    })?;
    let keys = crate::keys::file::load(&watched.config, &env).map_err(|e| {
        (
            format!("invalid configuration:\n{e}"),
            Some(failures.clone()),
        )
    })?;
    let summary = format!(
        "{} providers enabled, {} aliases, {} plugins{}",
        catalog.providers.iter().filter(|p| p.enabled()).count(),
        catalog.models.iter().filter(|m| m.enabled()).count(),
        plugins.plugins().count(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(", {} plugin file(s) rejected", failures.len())
        }
    );
    let gateway = Gateway::new(
        catalog,
        plugins,
        current.gateway.ledger.clone(),
        current.gateway.leases.clone(),
    )
    .map_err(|e| (format!("{e:#}"), Some(failures)))?;
    Ok((gateway, summary, keys))
}

/// The catalogue in `dir`, checked against the adapters and policies of a
/// plugin generation. Startup, `tollgate check` and every reload use it.
pub fn load_catalog(
    dir: &Path,
    env: &Env,
    plugins: &PluginRuntime,
) -> Result<Catalog, ConfigError> {
    let catalog = Catalog::load(dir, env, &|name| plugins.adapter(name).is_some())?;
    catalog.check_policies(&|name| plugins.policy(name).is_some())?;
    Ok(catalog)
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_names_of_watched_kinds_count() {
        assert!(watched_file(Path::new("providers/groq.yaml")));
        assert!(watched_file(Path::new("plugins/openai.wasm")));
        assert!(!watched_file(Path::new("plugins/.openai.wasm.swp")));
        assert!(!watched_file(Path::new("plugins/openai.wasm.tmp")));
        assert!(!watched_file(Path::new("providers/groq.yaml~")));
        assert!(!watched_file(Path::new("providers/README.md")));
        // A ConfigMap swap: only the final rename counts.
        assert!(watched_file(Path::new("providers/..data")));
        assert!(!watched_file(Path::new("providers/..data_tmp")));
        assert!(!watched_file(Path::new(
            "providers/..2026_12_07_03_20_00.123"
        )));
    }
}
