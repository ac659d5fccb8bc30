//! What a plugin instance may touch: nothing but the WIT imports.
//!
//! WASI is linked only because Rust's standard library imports it; the context
//! grants no files, no environment, no arguments and no sockets. Its stderr is
//! captured in a small buffer so a panic message can be reported with the trap.
//! A plugin built without `std` has no stderr: the SDK's panic handler sends
//! the same message through `host.log` at `error` level, and the last such
//! line is kept for the same purpose.
//! The context is built on the plugin's first WASI call (a panic message,
//! mostly): most instances never make one, and building a context seeds two
//! random generators, about a microsecond per instance (`just bench-plugin`).

use super::bindings::tollgate::plugin::{host, types};
use crate::redact::Redactor;
use arc_swap::ArcSwap;
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
    /// The last message the plugin logged at `error` level, cut to
    /// [`STDERR_CAPACITY`].
    last_error: Option<String>,
    /// The keys of the generation in service, scrubbed from what the plugin
    /// logs: it never sees a key, but an upstream's answer may echo one.
    secrets: Arc<ArcSwap<Redactor>>,
}

impl Sandbox {
    pub fn new(plugin: Arc<str>, memory_limit: usize, secrets: Arc<ArcSwap<Redactor>>) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .trap_on_grow_failure(false)
            .build();
        Sandbox {
            plugin,
            wasi: None,
            table: ResourceTable::new(),
            limits,
            last_error: None,
            secrets,
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
        let stderr = self.wasi.as_ref().map(|(_, pipe)| pipe.contents());
        let text = match (&stderr, &self.last_error) {
            (Some(bytes), _) if !bytes.is_empty() => String::from_utf8_lossy(bytes),
            (_, Some(logged)) => logged.as_str().into(),
            _ => return None,
        };
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
        let message = self.secrets.load().scrub(&message);
        let plugin = &*self.plugin;
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host::LogLevel::Error => {
                tracing::error!(plugin, "{message}");
                self.last_error = Some(cut(message, STDERR_CAPACITY));
            }
        }
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn cut(mut text: String, limit: usize) -> String {
    text.truncate(text.floor_char_boundary(limit));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasi_context_is_made_on_first_use() {
        let mut sandbox = Sandbox::new(Arc::from("p"), 1 << 20, Default::default());
        assert!(sandbox.wasi.is_none());
        assert_eq!(sandbox.last_words(), None);
        let _ = sandbox.ctx();
        assert!(sandbox.wasi.is_some());
        // Nothing was written to stderr yet.
        assert_eq!(sandbox.last_words(), None);
    }

    #[test]
    fn a_panic_logged_without_std_is_the_last_words() {
        use host::Host as _;
        let mut sandbox = Sandbox::new(Arc::from("p"), 1 << 20, Default::default());
        sandbox.log(host::LogLevel::Warn, "not an error".into());
        assert_eq!(sandbox.last_words(), None);
        sandbox.log(
            host::LogLevel::Error,
            "panicked at src/lib.rs:3:9:\nno model".into(),
        );
        assert_eq!(sandbox.last_words().as_deref(), Some("no model"));
        // What the plugin wrote to stderr, when it did, comes first.
        let _ = sandbox.ctx();
        assert_eq!(sandbox.last_words().as_deref(), Some("no model"));
    }

    #[test]
    fn a_long_error_is_cut_on_a_character_boundary() {
        let text = cut("é".repeat(STDERR_CAPACITY), STDERR_CAPACITY + 1);
        assert_eq!(text.len(), STDERR_CAPACITY);
    }
}
