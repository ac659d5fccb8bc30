//! Builds the bundled plugins (and the test fixture plugin) as WebAssembly
//! components, so that plain `cargo build` / `cargo test` on a fresh machine
//! with only the Rust toolchain produces a gateway that carries its plugins.
//!
//! The plugins are built by a nested `cargo build --target wasm32-wasip2` in a
//! target folder of their own (sharing the outer one would deadlock on its
//! lock). The wasm32-wasip2 standard library is installed through rustup when
//! it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, artifact stem, name the host knows it by)
const PLUGINS: &[(&str, &str, &str)] = &[
    ("tollgate-plugin-openai", "tollgate_plugin_openai", "openai"),
    (
        "tollgate-plugin-anthropic",
        "tollgate_plugin_anthropic",
        "anthropic",
    ),
    ("tollgate-plugin-cohere", "tollgate_plugin_cohere", "cohere"),
    ("tollgate-plugin-ollama", "tollgate_plugin_ollama", "ollama"),
    (
        "tollgate-plugin-talkies",
        "tollgate_plugin_talkies",
        "talkies",
    ),
    ("tollgate-plugin-sdcpp", "tollgate_plugin_sdcpp", "sdcpp"),
    (
        "tollgate-policy-free-first",
        "tollgate_policy_free_first",
        "free-first",
    ),
    (
        "tollgate-policy-most-headroom",
        "tollgate_policy_most_headroom",
        "most-headroom",
    ),
    (
        "tollgate-fixture-faulty",
        "tollgate_fixture_faulty",
        "faulty",
    ),
    (
        "tollgate-fixture-faulty-policy",
        "tollgate_fixture_faulty_policy",
        "faulty-policy",
    ),
    (
        "tollgate-fixture-legacy",
        "tollgate_fixture_legacy",
        "legacy",
    ),
    (
        "tollgate-fixture-mistyped",
        "tollgate_fixture_mistyped",
        "mistyped",
    ),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for path in ["wit", "sdk", "plugins", "tests/fixtures", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let wasm_target_dir = plugin_target_dir(&out_dir);
    ensure_wasm_target();
    build_plugins(&root, &wasm_target_dir);

    let built = wasm_target_dir.join(TARGET).join("release");
    let bundled = out_dir.join("plugins");
    std::fs::create_dir_all(&bundled).unwrap();
    for (_, stem, name) in PLUGINS {
        let from = built.join(format!("{stem}.wasm"));
        let to = bundled.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} failed: {e}", from.display()));
    }
    println!(
        "cargo:rustc-env=TOLLGATE_FIXTURE_PLUGINS={}",
        bundled.display()
    );
}

/// `<target>/plugins`, beside the host's own profile folders: OUT_DIR is
/// `<target>/<profile>/build/<pkg>-<hash>/out`, or one level deeper when
/// cross-compiling with `--target`.
fn plugin_target_dir(out_dir: &Path) -> PathBuf {
    let build_dir = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .expect("OUT_DIR lies under a build folder");
    let profile_dir = build_dir.parent().unwrap();
    let mut target_dir = profile_dir.parent().unwrap().to_path_buf();
    if !target_dir.join("CACHEDIR.TAG").exists() {
        target_dir.pop();
    }
    target_dir.join("plugins")
}

/// Adds the wasm32-wasip2 standard library through rustup when it is missing.
fn ensure_wasm_target() {
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

fn build_plugins(root: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for (package, _, _) in PLUGINS {
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
    let status = cmd.status().expect("running cargo to build the plugins");
    assert!(status.success(), "building the bundled plugins failed");
}
