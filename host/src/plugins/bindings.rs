//! Host-side bindings of `wit/tollgate.wit`, generated at compile time: the
//! adapter world here, the policy world in [`policy`], sharing the `types`
//! and `host` interfaces.
//!
//! Exports are async so calls run on wasmtime fibers and can be interrupted
//! at epoch deadlines without blocking the tokio worker they run on.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "adapter-plugin",
    exports: { default: async },
});

pub use self::tollgate::plugin::types::{
    Body, ClientRequest, ControlAction, ControlStep, Credential, Failure, FailureKind, FormPart,
    FormValue, Mode, PluginInfo, Reply, ResponseKind, StreamOutput, Target, Upload,
    UpstreamRequest, UpstreamResponse, Usage,
};

/// The routing-policy world.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-plugin",
        exports: { default: async },
        with: {
            "tollgate:plugin/types": super::tollgate::plugin::types,
            "tollgate:plugin/host": super::tollgate::plugin::host,
        },
    });

    pub use self::tollgate::plugin::policy_types::{
        Candidate, FailedAttempt, GpuLease, Headroom, NextStep, RequestShape, Tier,
    };
}
