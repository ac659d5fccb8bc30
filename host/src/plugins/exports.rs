//! A plugin's exported functions, found and type-checked once per component.
//!
//! The generated bindings (`AdapterPlugin::new`) look up and type-check every
//! export of the interface each time a component is instantiated, although an
//! attempt calls two or three of them. That walk cost about 2 µs of the
//! 14 µs an attempt spends in the sandbox (`just bench-plugin`). A function's
//! type belongs to the component, not to an instance, so it is checked once,
//! on the instance the plugin's smoke test makes when it loads; afterwards an
//! instance only resolves the function about to be called.
//!
//! The types are the ones `bindgen!` generates from `wit/tollgate.wit`, so
//! the WIT file stays the one contract: a signature written wrong here fails
//! the check at load, for every plugin, and the tests load every bundled one.

use super::bindings::policy::{Candidate, FailedAttempt, NextStep, RequestShape};
use super::bindings::{
    ClientRequest, ControlAction, ControlStep, Failure, PluginInfo, Reply, StreamOutput, Target,
    UpstreamRequest, UpstreamResponse,
};
use super::load_error::LoadError;
use super::sandbox::Sandbox;
use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Instance, ResourceAny, TypedFunc};

pub(super) const ADAPTER: &str = "tollgate:plugin/adapter@0.1.2";
pub(super) const POLICY: &str = "tollgate:plugin/policy@0.1.2";
/// Optional beside the adapter interface (since 0.1.2).
pub(super) const NATIVE: &str = "tollgate:plugin/native@0.1.2";

/// Whether `component` exports `interface` (at any compatible 0.1.x).
pub(super) fn offers(component: &Component, interface: &str) -> bool {
    component.get_export_index(None, interface).is_some()
}

/// Declares a struct of export indices for one interface: `checked` finds
/// and type-checks each function, and an accessor per function hands it out
/// typed, without checking again. `$lt` names the lifetime of borrowed
/// arguments.
macro_rules! interface_exports {
    (
        $(#[$doc:meta])*
        $name:ident<$lt:lifetime> = $interface:expr;
        $( $field:ident: $wit:literal ($($param:ty),*) -> $result:ty; )*
    ) => {
        $(#[$doc])*
        pub struct $name {
            $( $field: ComponentExportIndex, )*
        }

        impl $name {
            /// Finds every function of the interface on `instance` and checks
            /// its type against the WIT signature.
            #[allow(clippy::extra_unused_lifetimes)]
            pub fn checked<$lt>(store: &mut Store<Sandbox>, instance: &Instance) -> Result<Self, LoadError> {
                let interface = instance
                    .get_export_index(&mut *store, None, $interface)
                    .ok_or_else(|| LoadError::MissingInterface { interface: $interface.into() })?;
                $(
                    let $field = instance
                        .get_export_index(&mut *store, Some(&interface), $wit)
                        .ok_or_else(|| LoadError::MissingExport {
                            interface: $interface.into(),
                            function: $wit.into(),
                        })?;
                    instance
                        .get_typed_func::<($($param,)*), ($result,)>(&mut *store, &$field)
                        .map_err(|e| LoadError::Mistyped {
                            function: $wit.into(),
                            detail: format!("{e:#}"),
                        })?;
                )*
                Ok($name { $( $field, )* })
            }

            $(
                #[allow(clippy::extra_unused_lifetimes)]
                pub fn $field<$lt>(
                    &self,
                    store: &mut Store<Sandbox>,
                    instance: &Instance,
                ) -> wasmtime::Result<TypedFunc<($($param,)*), ($result,)>> {
                    let func = instance.get_func(store, &self.$field).ok_or_else(|| {
                        wasmtime::format_err!("`{}` is not an export of this instance", $wit)
                    })?;
                    // SAFETY: `checked` type-checked this export of this
                    // component as exactly this signature. `get_func` found
                    // it, so `instance` is of that same component: an index
                    // from another component finds nothing.
                    Ok(unsafe { TypedFunc::new_unchecked(func) })
                }
            )*
        }
    };
}

interface_exports! {
    /// The functions of `tollgate:plugin/adapter`.
    AdapterExports<'a> = ADAPTER;
    info: "info" () -> PluginInfo;
    build_request: "build-request" (&'a Target, &'a ClientRequest)
        -> Result<UpstreamRequest, String>;
    translate_response: "translate-response"
        (&'a Target, &'a ClientRequest, &'a UpstreamResponse) -> Result<Reply, String>;
    classify_failure: "classify-failure" (&'a Target, &'a UpstreamResponse) -> Failure;
    control: "control" (&'a Target, ControlAction, u32, Option<&'a UpstreamResponse>)
        -> Result<ControlStep, String>;
    new_translator: "[constructor]translator" (&'a Target, &'a ClientRequest) -> ResourceAny;
    push: "[method]translator.push" (ResourceAny, &'a [u8]) -> Result<StreamOutput, String>;
    finish: "[method]translator.finish" (ResourceAny) -> Result<StreamOutput, String>;
}

interface_exports! {
    /// The functions of `tollgate:plugin/native`.
    NativeExports<'a> = NATIVE;
    protocols: "protocols" () -> Vec<String>;
    build_native_request: "build-native-request"
        (&'a Target, &'a str, &'a [(String, String)], &'a str, bool) -> Result<UpstreamRequest, String>;
}

interface_exports! {
    /// The functions of `tollgate:plugin/policy`.
    PolicyExports<'a> = POLICY;
    info: "info" () -> PluginInfo;
    order: "order" (&'a RequestShape, &'a [Candidate]) -> Vec<u32>;
    after_failure: "after-failure" (&'a RequestShape, &'a FailedAttempt, u32) -> NextStep;
}
