//! Plugins compiled into the binary by `build.rs`, so `tollgate serve` works
//! from any folder. A `NAME.wasm` in the plugins folder overrides the bundled
//! plugin of that name.

/// (name, component bytes) of every bundled plugin.
pub const BUNDLED: &[(&str, &[u8])] = &[
    (
        "openai",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/openai.wasm")),
    ),
    (
        "anthropic",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/anthropic.wasm")),
    ),
    (
        "cohere",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/cohere.wasm")),
    ),
    (
        "ollama",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/ollama.wasm")),
    ),
    (
        "talkies",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/talkies.wasm")),
    ),
    (
        "sdcpp",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/sdcpp.wasm")),
    ),
    (
        "free-first",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/free-first.wasm")),
    ),
    (
        "most-headroom",
        include_bytes!(concat!(env!("OUT_DIR"), "/plugins/most-headroom.wasm")),
    ),
];
