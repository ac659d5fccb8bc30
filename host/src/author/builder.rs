//! `tollgate plugin build`: the crate in a folder, built for wasm32-wasip2 in
//! release, copied to `dist/NAME.wasm`.
//!
//! Cargo runs in the plugin's folder, so rustup honours the plugin's own
//! `rust-toolchain.toml` (and installs its target); its progress and
//! compiler messages go to the terminal as they would from `cargo build`.

use super::AuthorError;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const TARGET: &str = "wasm32-wasip2";

/// A plugin, built.
#[derive(Debug)]
pub struct Built {
    /// The package's name: the plugin's, and its file's stem.
    pub name: String,
    /// `DIR/dist/NAME.wasm`.
    pub wasm: PathBuf,
}

pub fn build(dir: &Path) -> Result<Built, AuthorError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(AuthorError::NoCrate(dir.to_owned()));
    }
    let manifest = manifest
        .canonicalize()
        .map_err(|e| AuthorError::io(&manifest, e))?;
    let name = package_name(dir, &manifest)?;
    ensure_target(dir);
    let artifact = cargo_build(dir, &manifest)?;
    // `dist`, not `./dist`, when building the current folder.
    let dist = if dir == Path::new(".") {
        PathBuf::from("dist")
    } else {
        dir.join("dist")
    };
    std::fs::create_dir_all(&dist).map_err(|e| AuthorError::io(&dist, e))?;
    let wasm = dist.join(format!("{name}.wasm"));
    // Written beside and renamed, so a gateway watching `dist/` (or a
    // copy racing this) never reads half a file.
    let partial = dist.join(format!(".{name}.wasm.partial"));
    std::fs::copy(&artifact, &partial).map_err(|e| AuthorError::io(&partial, e))?;
    std::fs::rename(&partial, &wasm).map_err(|e| AuthorError::io(&wasm, e))?;
    Ok(Built { name, wasm })
}

/// Cargo in the plugin's folder, with nothing that would pick another
/// toolchain than the plugin's `rust-toolchain.toml`.
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(dir).env_remove("RUSTUP_TOOLCHAIN");
    command
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
}

/// The package the manifest declares, from `cargo metadata`.
fn package_name(dir: &Path, manifest: &Path) -> Result<String, AuthorError> {
    let output = cargo_run(
        dir,
        &["metadata", "--no-deps", "--format-version", "1"],
        manifest,
        || {
            format!(
                "cargo cannot read {}: see its message above",
                manifest.display()
            )
        },
    )?;
    let metadata: Metadata = serde_json::from_slice(&output.stdout).map_err(|e| {
        AuthorError::Cargo(format!(
            "cargo metadata gave what this tool cannot read: {e}"
        ))
    })?;
    metadata
        .packages
        .into_iter()
        .find(|p| p.manifest_path == manifest)
        .map(|p| p.name)
        .ok_or_else(|| {
            AuthorError::Cargo(format!(
                "{} declares no package: a plugin is a crate with a [package] and crate-type = [\"cdylib\"]",
                manifest.display()
            ))
        })
}

/// Adds the wasm32-wasip2 standard library when the plugin's toolchain
/// lacks it. Without rustup, cargo's own error says what is missing.
fn ensure_target(dir: &Path) {
    let sysroot = Command::new("rustc")
        .current_dir(dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if sysroot.is_some_and(|s| !s.join("lib/rustlib").join(TARGET).exists()) {
        let _ = Command::new("rustup")
            .current_dir(dir)
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["target", "add", TARGET])
            .status();
    }
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// Builds and returns the component cargo wrote.
fn cargo_build(dir: &Path, manifest: &Path) -> Result<PathBuf, AuthorError> {
    let output = cargo_run(
        dir,
        &[
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format",
            "json-render-diagnostics",
        ],
        manifest,
        || "the build failed: cargo's messages are above".to_owned(),
    )?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact" && m.manifest_path.as_deref() == Some(manifest))
        .flat_map(|m| m.filenames)
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            AuthorError::Cargo(
                "the build made no .wasm: a plugin crate needs `[lib] crate-type = [\"cdylib\"]`"
                    .into(),
            )
        })
}

/// `cargo ARGS --manifest-path MANIFEST` in `dir`, its messages on the
/// terminal and its stdout returned; `failed` says what a failure means.
fn cargo_run(
    dir: &Path,
    args: &[&str],
    manifest: &Path,
    failed: impl FnOnce() -> String,
) -> Result<std::process::Output, AuthorError> {
    let output = cargo(dir)
        .args(args)
        .arg("--manifest-path")
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(cargo_missing)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(AuthorError::Cargo(failed()))
    }
}

fn cargo_missing(e: std::io::Error) -> AuthorError {
    AuthorError::Cargo(format!(
        "cannot run cargo: {e}; install Rust with rustup (https://rustup.rs)"
    ))
}
