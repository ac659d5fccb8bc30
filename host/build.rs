//! Builds every plugin crate under `plugins/` as a WebAssembly component and
//! bundles it into the binary, so that plain `cargo build` / `cargo test` on
//! a fresh machine with only the Rust toolchain gives a gateway that carries
//! its plugins. A new folder under `plugins/` is a new bundled plugin; no
//! list names them (see `build/wasm.rs`).
//!
//! The plugins are built by a nested `cargo build --target wasm32-wasip2` in
//! `<target>/plugins` (sharing the outer target folder would deadlock on its
//! lock). The wasm32-wasip2 standard library is installed through rustup
//! when it is missing. The fixture plugins of the tests are not built here.

#[path = "build/wasm.rs"]
mod wasm;

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    for path in ["wit", "sdk", "plugins", "Cargo.lock", "host/build"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = plugin_target_dir(&out_dir);
    let plugins = wasm::discover(&root.join("plugins"));
    wasm::ensure_target();
    wasm::build(&root, &plugins, &target_dir);

    let bundled = out_dir.join("plugins");
    std::fs::create_dir_all(&bundled).unwrap();
    let mut list = String::from("&[\n");
    for plugin in &plugins {
        let from = plugin.wasm(&target_dir);
        let to = bundled.join(format!("{}.wasm", plugin.name));
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} failed: {e}", from.display()));
        writeln!(list, "    ({:?}, include_bytes!({:?})),", plugin.name, to).unwrap();
    }
    list.push(']');
    std::fs::write(out_dir.join("bundled.rs"), list).unwrap();
    // For the tests, which install bundled plugins as files too.
    println!(
        "cargo:rustc-env=TOLLGATE_BUNDLED_PLUGINS={}",
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
