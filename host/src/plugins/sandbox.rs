//! What a plugin instance may touch: nothing but the WIT imports.
//!
//! WASI is linked only because Rust's standard library imports it; the context
//! grants no files, no environment, no arguments and no sockets. Its stderr is
//! captured in a small buffer so a panic message can be reported with the trap.

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
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(super) limits: StoreLimits,
}

impl Sandbox {
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(false)
            .build();
        Sandbox {
            plugin,
            wasi,
            table: ResourceTable::new(),
            stderr,
            limits,
        }
    }

    /// What the plugin said before it died: its panic message when it
    /// panicked (the line after `panicked at …`), else its last line.
    pub fn last_words(&self) -> Option<String> {
        let bytes = self.stderr.contents();
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
        WasiCtxView {
            ctx: &mut self.wasi,
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
