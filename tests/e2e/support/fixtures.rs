//! The fixture plugins (`tests/fixtures/*`: a faulty adapter, a faulty
//! policy, a plugin of an old WIT version, one with mistyped exports), built
//! on first use with the same code that builds the bundled ones.

#[path = "../../../host/build/wasm.rs"]
mod wasm;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The built plugin `name`: a fixture (its folder's name under
/// `tests/fixtures/`), else the bundled plugin of that name.
pub fn fixture(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if !root.join("tests/fixtures").join(name).is_dir() {
        return Path::new(env!("TOLLGATE_BUNDLED_PLUGINS")).join(format!("{name}.wasm"));
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| wasm::fixtures(root, &std::env::current_exe().unwrap()));
    dir.join(format!("{name}.wasm"))
}
