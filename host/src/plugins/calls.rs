//! How the host enters a plugin: directly, on the serving thread's own
//! stack, or on a fiber with a stack of its own.
//!
//! A plugin built with Rust's standard library imports WASI, and two of the
//! WASI functions it links (`pollable.block`, `output-stream.blocking-flush`)
//! may wait; wasmtime then requires every call into the instance to run on a
//! fiber, which takes a stack from the pool for the instance's lifetime. A
//! plugin built without `std` (the SDK's `no_std` mode, as every bundled
//! plugin but `anthropic` and `cohere` is) imports only the gateway's own
//! interface, whose one function never waits, so it is called directly: no
//! fiber to enter and leave, and the plugin's frames land on the serving
//! thread's stack, which is warm in the cache, instead of one of a thousand
//! pooled stacks. At concurrency 32 this build served 1.6–9.8% more
//! requests than the one before it (`just bench-pair`, three runs), and
//! with 1,000 streams open it holds 4–5 MB less.
//!
//! Either way a call's CPU deadline traps it (epoch interruption never
//! yields here), so a direct call holds its thread no longer than a fiber
//! would. A direct call needs `max_wasm_stack` (512 KiB) free on the calling
//! thread; serving lanes and tokio's workers have 2 MiB.

use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc,
};

/// How calls into one plugin's instances are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// On the calling thread's stack.
    Direct,
    /// On a fiber, as a component that may call a waiting WASI function needs.
    OnFiber,
}

impl Calls {
    /// Fibers for a component that imports any WASI interface, direct calls
    /// otherwise.
    pub fn of(component: &Component) -> Calls {
        let engine = component.engine();
        let uses_wasi = component
            .component_type()
            .imports(engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        if uses_wasi {
            Calls::OnFiber
        } else {
            Calls::Direct
        }
    }

    pub async fn instantiate<T: Send + 'static>(
        self,
        pre: &InstancePre<T>,
        store: &mut Store<T>,
    ) -> wasmtime::Result<Instance> {
        match self {
            Calls::Direct => pre.instantiate(store),
            Calls::OnFiber => pre.instantiate_async(store).await,
        }
    }

    pub async fn call<T, P, R>(
        self,
        func: TypedFunc<P, R>,
        store: &mut Store<T>,
        params: P,
    ) -> wasmtime::Result<R>
    where
        T: Send + 'static,
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        match self {
            Calls::Direct => func.call(store, params),
            Calls::OnFiber => func.call_async(store, params).await,
        }
    }
}
