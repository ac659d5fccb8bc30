//! Plugins compiled into the binary by `build.rs`: one for each crate under
//! `plugins/`, named by its folder, so `tollgate serve` works from any
//! folder. A `NAME.wasm` in the plugins folder overrides the bundled plugin
//! of that name.

/// (name, component bytes) of every bundled plugin.
pub const BUNDLED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The fixture plugins of the tests (`tests/fixtures/*`), built on first
/// use: the binary never carries them.
#[cfg(test)]
pub fn fixtures() -> &'static std::path::Path {
    #[path = "../../build/wasm.rs"]
    mod wasm;
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        wasm::fixtures(root, &std::env::current_exe().unwrap())
    })
}
