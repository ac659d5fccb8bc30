//! What a plugin instance may touch: nothing but the WIT imports.
//!
//! WASI is linked only because Rust's standard library imports it; the context
//! grants no files, no environment, no arguments and no sockets. Its stderr is
//! captured in a small buffer so a panic message can be reported with the trap.
//! The context is built on the plugin's first WASI call (a panic message,
//! mostly): most instances never make one, and building a context seeds two
//! random generators, about a microsecond per instance (`just bench-plugin`).

use super::bindings::tollgate::plugin::{host, types};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of a plugin's stderr is kept (enough for a panic message).
const STDERR_CAPACITY: usize = 4096;

/// The state each plugin store carries.
pub struct Sandbox {
    plugin: Arc<str>,
    /// The WASI context and the stderr it writes to, once the plugin uses it.
    wasi: Option<(WasiCtx, MemoryOutputPipe)>,
    table: ResourceTable,
    pub(super) limits: StoreLimits,
}

impl Sandbox {
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(false)
            .build();
        Sandbox {
            plugin,
            wasi: None,
            table: ResourceTable::new(),
            limits,
        }
    }

    /// A context that grants nothing, with stderr kept in memory.
    fn wasi() -> (WasiCtx, MemoryOutputPipe) {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        (wasi, stderr)
    }

    /// What the plugin said before it died: its panic message when it
    /// panicked (the line after `panicked at …`), else its last line.
    pub fn last_words(&self) -> Option<String> {
        let bytes = self.wasi.as_ref()?.1.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note:"))
            .collect();
        let panic = lines.iter().position(|line| line.contains("panicked at"));
        match panic {
            Some(i) if i + 1 < lines.len() => Some(lines[i + 1].to_owned()),
            _ => lines.last().map(|line| (*line).to_owned()),
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (ctx, _) = self.wasi.get_or_insert_with(Sandbox::wasi);
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl types::Host for Sandbox {}

impl host::Host for Sandbox {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let plugin = &*self.plugin;
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasi_context_is_made_on_first_use() {
        let mut sandbox = Sandbox::new(Arc::from("p"), 1 << 20);
        assert!(sandbox.wasi.is_none());
        assert_eq!(sandbox.last_words(), None);
        let _ = sandbox.ctx();
        assert!(sandbox.wasi.is_some());
        // Nothing was written to stderr yet.
        assert_eq!(sandbox.last_words(), None);
    }
}
