//! Why a plugin file was not put in service, in words a plugin author can act
//! on. The gateway logs these and shows them in `/admin/plugins`;
//! `tollgate plugin check` prints them with a [`LoadError::hint`].
//!
//! The checks run in the order a file meets them when it loads: is it
//! WebAssembly at all, a component rather than a core module, built against
//! a contract version this host speaks, importing only what the host
//! provides, exporting a plugin world, with every function of it, and does it
//! start within the sandbox's limits.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The `tollgate:plugin` versions this host serves: `0.1.0` up to this one.
pub const WIT_VERSION: &str = "0.1.2";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("it is not WebAssembly (the file starts with {starts})")]
    NotWasm { starts: String },
    #[error("it is a core WebAssembly module, not a component")]
    CoreModule,
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the compiler panicked on this file")]
    CompilerPanic,
    #[error("it is built against tollgate:plugin@{found}; this host speaks 0.1.0 to {WIT_VERSION}")]
    UnsupportedWit { found: String },
    #[error("the component's imports do not match what the host provides: {0}")]
    Imports(String),
    #[error(
        "it exports neither tollgate:plugin/adapter nor tollgate:plugin/policy (0.1.x); it exports {}",
        list(exports)
    )]
    WrongWorld { exports: Vec<String> },
    #[error("{interface} has no function `{function}`")]
    MissingExport { interface: String, function: String },
    #[error("the component does not export {interface}")]
    MissingInterface { interface: String },
    #[error("`{function}` does not have the type the WIT gives it: {detail}")]
    Mistyped { function: String, detail: String },
    #[error("it could not be instantiated within the sandbox's limits: {0}")]
    Instantiate(String),
    #[error("calling `{function}` failed: {reason}")]
    FirstCall { function: String, reason: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

impl LoadError {
    /// A compile error: the pooling allocator refuses a component whose
    /// memories or tables exceed the sandbox when it is compiled, which is
    /// the limits speaking, not a broken file.
    pub fn compiling(error: anyhow::Error) -> Self {
        let text = format!("{error:#}");
        if text.contains("pooling allocator") {
            LoadError::Instantiate(text)
        } else {
            LoadError::Invalid(text)
        }
    }

    /// What to do about it, for `tollgate plugin check`.
    pub fn hint(&self) -> String {
        match self {
            LoadError::NotWasm { .. } | LoadError::Invalid(_) | LoadError::CompilerPanic => {
                "build it with `tollgate plugin build`, which writes dist/NAME.wasm; a file cut short while copying reads as invalid too".into()
            }
            LoadError::CoreModule => {
                "build for the wasm32-wasip2 target (`tollgate plugin build` does): wasm32-unknown-unknown and wasm32-wasip1 make core modules".into()
            }
            LoadError::UnsupportedWit { .. } => format!(
                "build it against a tollgate-sdk of the 0.1 series (the sdk/ folder of this gateway's checkout, WIT {WIT_VERSION}), or run a gateway that speaks its version"
            ),
            LoadError::Imports(_) => {
                "a plugin may import tollgate:plugin/host and WASI 0.2 only; an import from a newer contract or another world (wasi:http, say) cannot be linked".into()
            }
            LoadError::WrongWorld { exports } if exports.iter().any(|e| e.starts_with("wasi:cli/run")) => {
                "this is a command, not a plugin: make the crate a library (`crate-type = [\"cdylib\"]`) and call export_adapter!(..) or export_policy!(..)".into()
            }
            LoadError::WrongWorld { .. } => {
                "call tollgate_sdk::export_adapter!(..) or export_policy!(..) once at the crate root".into()
            }
            LoadError::MissingExport { .. } | LoadError::MissingInterface { .. } | LoadError::Mistyped { .. } => {
                "it was built against a hand-edited or partial copy of the contract: build it with tollgate-sdk, whose export macros export every function".into()
            }
            LoadError::Instantiate(_) => {
                "its memory, tables or start-up exceed the sandbox (TOLLGATE_PLUGIN_MEMORY_MB, default 64): shrink static data or raise the limit".into()
            }
            LoadError::FirstCall { .. } => {
                "`info` must return at once, without panicking: the host calls it when the plugin loads, under the CPU deadline (TOLLGATE_PLUGIN_DEADLINE_MS)".into()
            }
        }
    }
}

/// A file's first bytes, before it is compiled: a component starts with the
/// WebAssembly magic and a layer of 1, a core module with a layer of 0.
pub fn sniff(bytes: &[u8]) -> Result<(), LoadError> {
    if !bytes.starts_with(b"\0asm") {
        let starts = bytes
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let starts = if starts.is_empty() {
            "nothing: it is empty".to_owned()
        } else {
            starts
        };
        return Err(LoadError::NotWasm { starts });
    }
    match bytes.get(6..8) {
        Some([0, 0]) => Err(LoadError::CoreModule),
        _ => Ok(()),
    }
}

/// Refuses a component whose `tollgate:plugin` exports or imports belong to
/// another series than 0.1 (a newer 0.1.y is left to the import check: it
/// loads unless it uses what this host lacks).
pub fn check_version(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.imports(engine).map(|(name, _)| name.to_owned()));
    for name in names {
        if let Some(version) = name
            .strip_prefix("tollgate:plugin/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version)
            && !version.starts_with("0.1.")
        {
            return Err(LoadError::UnsupportedWit {
                found: version.to_owned(),
            });
        }
    }
    Ok(())
}

/// Every name a component exports, for [`LoadError::WrongWorld`].
pub fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_a_core_module_from_a_component() {
        assert!(matches!(
            sniff(b"\x7fELF\x02\x01"),
            Err(LoadError::NotWasm { starts }) if starts == "7f 45 4c 46"
        ));
        assert!(matches!(sniff(b""), Err(LoadError::NotWasm { .. })));
        assert!(matches!(
            sniff(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(sniff(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn a_command_gets_its_own_hint() {
        let command = LoadError::WrongWorld {
            exports: vec!["wasi:cli/run@0.2.3".into()],
        };
        assert!(command.hint().contains("cdylib"), "{}", command.hint());
        assert!(
            command
                .to_string()
                .ends_with("it exports wasi:cli/run@0.2.3")
        );
    }
}
