//! Finding and building plugin crates as WebAssembly components. Shared by
//! `build.rs` (the bundled plugins, every crate under `plugins/`) and the
//! tests (the fixtures under `tests/fixtures/`, built only when a test
//! asks for one), so a plugin is listed nowhere: its folder is the list.
//!
//! A crate whose `src/lib.rs` declares `no_std` (`#![no_std]`, or in a
//! `cfg_attr`) is built in one cargo run, the others in another: cargo
//! unifies a crate's features within one run, so a `std` plugin in the same
//! run would turn the SDK's `std` feature on for the `no_std` ones too.

#![allow(dead_code)] // each includer uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// One plugin crate.
pub struct Crate {
    /// The cargo package (`tollgate-plugin-openai`).
    pub package: String,
    /// The name the host knows it by: its folder's (`openai`).
    pub name: String,
    /// Built with Rust's standard library.
    pub std: bool,
}

impl Crate {
    /// Where cargo writes its component under `target_dir`.
    pub fn wasm(&self, target_dir: &Path) -> PathBuf {
        let stem = self.package.replace('-', "_");
        target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{stem}.wasm"))
    }
}

/// Every crate in a folder of `dir` (one with a `Cargo.toml`), by name.
pub fn discover(dir: &Path) -> Vec<Crate> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut crates: Vec<Crate> = entries
        .filter_map(|entry| {
            let folder = entry.ok()?.path();
            let manifest = std::fs::read_to_string(folder.join("Cargo.toml")).ok()?;
            let lib = std::fs::read_to_string(folder.join("src/lib.rs")).unwrap_or_default();
            Some(Crate {
                package: package_name(&manifest)
                    .unwrap_or_else(|| panic!("{}: no package name", folder.display())),
                name: folder.file_name()?.to_string_lossy().into_owned(),
                std: !declares_no_std(&lib),
            })
        })
        .collect();
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    crates
}

/// The `name = "..."` of a manifest's `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let package = manifest.split("[package]").nth(1)?;
    let table = package.split("\n[").next()?;
    let line = table.lines().find(|l| l.trim_start().starts_with("name"))?;
    let value = line.split_once('=')?.1.trim();
    Some(value.trim_matches('"').to_owned())
}

fn declares_no_std(lib: &str) -> bool {
    lib.lines()
        .map(str::trim)
        .any(|l| l.starts_with("#![") && l.contains("no_std"))
}

/// Builds `crates` into `target_dir`: the `no_std` ones in one cargo run,
/// the `std` ones in another.
pub fn build(root: &Path, crates: &[Crate], target_dir: &Path) {
    for std in [false, true] {
        let packages: Vec<&str> = crates
            .iter()
            .filter(|c| c.std == std)
            .map(|c| c.package.as_str())
            .collect();
        if !packages.is_empty() {
            cargo_build(root, &packages, target_dir);
        }
    }
}

/// The toolchain the plugins are built with when it is not the host's:
/// the fuzz targets build the host on nightly, whose rustup may lack the
/// wasm32-wasip2 library, while the pinned toolchain has it.
const PLUGIN_TOOLCHAIN: &str = "TOLLGATE_PLUGIN_TOOLCHAIN";

fn cargo_build(root: &Path, packages: &[&str], target_dir: &Path) {
    let toolchain = std::env::var(PLUGIN_TOOLCHAIN).ok();
    let cargo = match toolchain {
        Some(_) => "cargo".into(),
        None => std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    };
    let mut cmd = Command::new(cargo);
    if let Some(toolchain) = &toolchain {
        cmd.env("RUSTUP_TOOLCHAIN", toolchain);
        for var in ["RUSTC", "RUSTDOC", "RUSTC_WRAPPER"] {
            cmd.env_remove(var);
        }
    }
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Flags and wrappers meant for the host build must not leak into the
    // plugin build (clippy, `-C target-cpu=native`, …).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build plugins");
    assert!(status.success(), "building the plugins {packages:?} failed");
}

/// Adds the wasm32-wasip2 standard library through rustup when it is missing.
pub fn ensure_target() {
    println!("cargo:rerun-if-env-changed={PLUGIN_TOOLCHAIN}");
    if std::env::var_os(PLUGIN_TOOLCHAIN).is_some() {
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    let status = rustup.status();
    if !status.is_ok_and(|s| s.success()) {
        panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; \
             install it and build again"
        );
    }
}

/// Builds the test fixtures (every crate under `tests/fixtures/`) for a test
/// binary, into `<target>/fixtures`, and returns the folder holding them as
/// `NAME.wasm`. `test_exe` is the running test (`<target>/<profile>/deps/…`).
pub fn fixtures(root: &Path, test_exe: &Path) -> PathBuf {
    let target = test_exe
        .ancestors()
        .nth(3)
        .expect("a test binary lies in <target>/<profile>/deps");
    let target_dir = target.join("fixtures");
    let crates = discover(&root.join("tests/fixtures"));
    ensure_target();
    build(root, &crates, &target_dir);
    let out = target_dir.join("named");
    std::fs::create_dir_all(&out).unwrap();
    for fixture in &crates {
        let to = out.join(format!("{}.wasm", fixture.name));
        std::fs::copy(fixture.wasm(&target_dir), &to)
            .unwrap_or_else(|e| panic!("copying fixture {} failed: {e}", fixture.name));
    }
    out
}
