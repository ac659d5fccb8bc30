//! Host-side bindings of `wit/tollgate.wit`, generated at compile time.
//!
//! Exports are async so calls run on wasmtime fibers and can be interrupted
//! at epoch deadlines without blocking the tokio worker they run on.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "adapter-plugin",
    exports: { default: async },
});

pub use self::tollgate::plugin::types::{
    Body, ClientRequest, Credential, Failure, FailureKind, Mode, PluginInfo, Reply, ResponseKind,
    StreamOutput, Target, UpstreamRequest, UpstreamResponse, Usage,
};
