//! Tools for plugin authors, behind `tollgate plugin`: start a crate from a
//! template (`new`), build it into a component (`build`), load a `.wasm` as
//! the gateway would and say what is wrong with it (`check`), and run it
//! against recorded cases (`test`).
//!
//! `check` and `test` load plugins with [`crate::plugins::PluginRuntime::single`],
//! the gateway's own loader, so what passes here loads in a gateway of the
//! same version.

pub mod builder;
pub mod cases;
pub mod check;
mod matching;
pub mod scaffold;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    #[error(
        "`{0}` cannot name a plugin: use lowercase letters and digits in words joined by `-`, starting with a letter (acme, acme-ai)"
    )]
    BadName(String),
    #[error("{} already exists and is not empty: choose another --dir", .0.display())]
    Exists(PathBuf),
    #[error(
        "the Tollgate checkout this binary was built from is gone (no SDK at {}): pass --sdk PATH, the sdk/ folder of a Tollgate checkout",
        .0.display()
    )]
    NoSdk(PathBuf),
    #[error(
        "{} is not the tollgate-sdk crate (its Cargo.toml does not name it): pass the sdk/ folder of a Tollgate checkout",
        .0.display()
    )]
    NotAnSdk(PathBuf),
    #[error("no Cargo.toml in {}: pass a plugin's folder, or start one with `tollgate plugin new NAME`", .0.display())]
    NoCrate(PathBuf),
    #[error("{0}")]
    Cargo(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AuthorError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        AuthorError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
