//! `tollgate plugin check FILE.wasm`: loads the file exactly as the gateway
//! would, under the limits the gateway would run it with, and says in words
//! what it is or what is wrong with it.

use super::cases::mode_name;
use crate::plugins::engine::Limits;
use crate::plugins::{LoadError, LoadedPlugin, PluginRuntime};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What loading the file found.
pub enum Verdict {
    Loads(Summary),
    Rejected(LoadError),
}

/// A plugin that loads, as the gateway will list it.
pub struct Summary {
    /// The name fragments give it in `adapter:` (the file's stem).
    pub name: String,
    pub kind: &'static str,
    /// The name and version the plugin gives itself.
    pub info_name: String,
    pub version: String,
    pub modes: Vec<&'static str>,
    pub wit_version: String,
    pub native: Vec<String>,
    pub uses_wasi: bool,
    pub bytes: usize,
    pub load_time: Duration,
}

/// The file's verdict; an error only when the file cannot be read or the
/// sandbox cannot start.
pub async fn check(path: &Path, limits: Limits) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    Ok(match load(path, limits).await? {
        Ok((bytes, _, plugin)) => {
            let name = plugin_name(path);
            Verdict::Loads(summary(name, &plugin, bytes, started.elapsed()))
        }
        Err(error) => Verdict::Rejected(error),
    })
}

/// The file loaded as the gateway would, on a runtime of its own: its size,
/// the runtime and the plugin, or why it would be rejected.
pub async fn load(
    path: &Path,
    limits: Limits,
) -> anyhow::Result<Result<(usize, PluginRuntime, Arc<LoadedPlugin>), LoadError>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let size = bytes.len();
    let loaded = PluginRuntime::single(limits, &plugin_name(path), path, bytes).await?;
    Ok(loaded.map(|(runtime, plugin)| (size, runtime, plugin)))
}

/// The name the gateway would serve the file under: its stem.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn summary(name: String, plugin: &Arc<LoadedPlugin>, bytes: usize, load_time: Duration) -> Summary {
    Summary {
        name,
        kind: plugin.kind.name(),
        info_name: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
        modes: plugin.info.modes.iter().map(|m| mode_name(*m)).collect(),
        wit_version: plugin.wit_version.clone(),
        native: plugin
            .native
            .as_ref()
            .map(|n| n.protocols.clone())
            .unwrap_or_default(),
        uses_wasi: plugin.uses_wasi(),
        bytes,
        load_time,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ok: {} `{}`, version {}, built against tollgate:plugin@{}",
            self.kind, self.name, self.version, self.wit_version
        )?;
        if self.kind == "adapter" {
            let modes = if self.modes.is_empty() {
                "none".to_owned()
            } else {
                self.modes.join(", ")
            };
            writeln!(f, "  modes: {modes}")?;
        }
        if !self.native.is_empty() {
            writeln!(f, "  takes as they are: {}", self.native.join(", "))?;
        }
        if self.info_name != self.name {
            writeln!(
                f,
                "  note: it calls itself `{}`, but fragments name it by its file: adapter: {}",
                self.info_name, self.name
            )?;
        }
        let sandbox = if self.uses_wasi {
            "imports WASI (built with std): each call runs on a fiber"
        } else {
            "imports only the gateway's interface (no_std): called on the serving thread"
        };
        writeln!(f, "  {sandbox}")?;
        write!(
            f,
            "  {} KiB, compiled and started in {} ms",
            self.bytes.div_ceil(1024),
            self.load_time.as_millis()
        )
    }
}
