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

/// One plugin crate to build.
struct Plugin {
    package: &'static str,
    /// The `.wasm` cargo writes, without the extension.
    stem: &'static str,
    /// The name the host knows it by.
    name: &'static str,
    /// Built with Rust's standard library. The others are `no_std` and turn
    /// the SDK's `std` feature off; cargo unifies a crate's features within
    /// one build, so each kind gets a cargo run of its own.
    std: bool,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        package: "tollgate-plugin-openai",
        stem: "tollgate_plugin_openai",
        name: "openai",
        std: false,
    },
    Plugin {
        package: "tollgate-plugin-anthropic",
        stem: "tollgate_plugin_anthropic",
        name: "anthropic",
        std: true,
    },
    Plugin {
        package: "tollgate-plugin-cohere",
        stem: "tollgate_plugin_cohere",
        name: "cohere",
        std: true,
    },
    Plugin {
        package: "tollgate-plugin-ollama",
        stem: "tollgate_plugin_ollama",
        name: "ollama",
        std: false,
    },
    Plugin {
        package: "tollgate-plugin-talkies",
        stem: "tollgate_plugin_talkies",
        name: "talkies",
        std: false,
    },
    Plugin {
        package: "tollgate-plugin-sdcpp",
        stem: "tollgate_plugin_sdcpp",
        name: "sdcpp",
        std: false,
    },
    Plugin {
        package: "tollgate-policy-free-first",
        stem: "tollgate_policy_free_first",
        name: "free-first",
        std: false,
    },
    Plugin {
        package: "tollgate-policy-most-headroom",
        stem: "tollgate_policy_most_headroom",
        name: "most-headroom",
        std: false,
    },
    Plugin {
        package: "tollgate-fixture-faulty",
        stem: "tollgate_fixture_faulty",
        name: "faulty",
        std: true,
    },
    Plugin {
        package: "tollgate-fixture-faulty-policy",
        stem: "tollgate_fixture_faulty_policy",
        name: "faulty-policy",
        std: false,
    },
    Plugin {
        package: "tollgate-fixture-legacy",
        stem: "tollgate_fixture_legacy",
        name: "legacy",
        std: true,
    },
    Plugin {
        package: "tollgate-fixture-mistyped",
        stem: "tollgate_fixture_mistyped",
        name: "mistyped",
        std: true,
    },
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
    for std in [false, true] {
        build_plugins(&root, &wasm_target_dir, std);
    }

    let built = wasm_target_dir.join(TARGET).join("release");
    let bundled = out_dir.join("plugins");
    std::fs::create_dir_all(&bundled).unwrap();
    for plugin in PLUGINS {
        let from = built.join(format!("{}.wasm", plugin.stem));
        let to = bundled.join(format!("{}.wasm", plugin.name));
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

/// Builds the plugins built with `std` (or the `no_std` ones).
fn build_plugins(root: &Path, target_dir: &Path, std: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for plugin in PLUGINS.iter().filter(|p| p.std == std) {
        cmd.args(["-p", plugin.package]);
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
