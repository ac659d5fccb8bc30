//! One plugin instance serving one attempt (or one stream).
//!
//! Every call gets a fresh CPU deadline. A trap poisons the instance, so the
//! session is consumed by the attempt and dropped afterwards; the caller moves
//! on to the next candidate.

use super::bindings::{
    ClientRequest, ControlAction, ControlStep, Failure, Reply, StreamOutput, Target,
    UpstreamRequest, UpstreamResponse,
};
use super::exports::AdapterExports;
use super::sandbox::Sandbox;
use super::spares::Ready;
use super::{Kind, LoadedAdapter, PluginError};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Instance, Lift, Lower, ResourceAny, TypedFunc};

/// How a session finds one of the adapter's functions (an accessor of
/// [`AdapterExports`]).
type Lookup<P, R> =
    fn(&AdapterExports, &mut Store<Sandbox>, &Instance) -> wasmtime::Result<TypedFunc<P, R>>;

pub struct Session {
    adapter: Arc<LoadedAdapter>,
    store: Store<Sandbox>,
    instance: Instance,
    deadline_ticks: u64,
    _slot: OwnedSemaphorePermit,
}

impl Session {
    /// `adapter` must be an adapter (the caller checked its kind).
    pub(super) fn new(adapter: Arc<LoadedAdapter>, ready: Ready, deadline_ticks: u64) -> Self {
        Session {
            adapter,
            store: ready.store,
            instance: ready.instance,
            deadline_ticks,
            _slot: ready.slot,
        }
    }

    /// Turns a trap into a [`PluginError`] that names the plugin and, when it
    /// panicked, its panic message.
    fn fault(&self, error: wasmtime::Error) -> PluginError {
        PluginError::from_trap(&self.adapter.name, error, self.store.data().last_words())
    }

    /// Calls one of the adapter's functions with a full CPU deadline.
    async fn call<P, R>(&mut self, lookup: Lookup<P, (R,)>, params: P) -> Result<R, PluginError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: Lift + Send + Sync + 'static,
        (R,): ComponentNamedList + Lift,
    {
        let Kind::Adapter(exports) = &self.adapter.kind else {
            unreachable!("sessions are made only for adapters");
        };
        let func = lookup(exports, &mut self.store, &self.instance);
        self.invoke(func, params).await
    }

    async fn invoke<P, R>(
        &mut self,
        func: wasmtime::Result<TypedFunc<P, (R,)>>,
        params: P,
    ) -> Result<R, PluginError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: Lift + Send + Sync + 'static,
        (R,): ComponentNamedList + Lift,
    {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = match func {
            Ok(func) => self.adapter.calls.call(func, &mut self.store, params).await,
            Err(e) => Err(e),
        };
        match result {
            Ok((value,)) => {
                self.adapter.calls_ok.inc();
                Ok(value)
            }
            Err(e) => Err(self.fault(e)),
        }
    }

    /// The upstream request for a client request in `protocol`, its body
    /// as the client sent it (WIT `native.build-native-request`). The
    /// caller checked that the adapter speaks `protocol`.
    pub async fn build_native_request(
        &mut self,
        target: &Target,
        protocol: &str,
        headers: &[(String, String)],
        body: &str,
        stream: bool,
    ) -> Result<Result<UpstreamRequest, String>, PluginError> {
        let adapter = self.adapter.clone();
        let Some(native) = &adapter.native else {
            return Ok(Err(format!("the adapter does not take `{protocol}`")));
        };
        let func = native
            .exports
            .build_native_request(&mut self.store, &self.instance);
        self.invoke(func, (target, protocol, headers, body, stream))
            .await
    }

    pub async fn build_request(
        &mut self,
        target: &Target,
        request: &ClientRequest,
    ) -> Result<Result<UpstreamRequest, String>, PluginError> {
        self.call(AdapterExports::build_request, (target, request))
            .await
    }

    pub async fn translate_response(
        &mut self,
        target: &Target,
        request: &ClientRequest,
        response: &UpstreamResponse,
    ) -> Result<Result<Reply, String>, PluginError> {
        self.call(
            AdapterExports::translate_response,
            (target, request, response),
        )
        .await
    }

    pub async fn classify_failure(
        &mut self,
        target: &Target,
        response: &UpstreamResponse,
    ) -> Result<Failure, PluginError> {
        self.call(AdapterExports::classify_failure, (target, response))
            .await
    }

    /// The next call of a local backend's load or unload sequence.
    pub async fn control(
        &mut self,
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<&UpstreamResponse>,
    ) -> Result<Result<ControlStep, String>, PluginError> {
        self.call(AdapterExports::control, (target, action, step, previous))
            .await
    }

    /// Turns this session into the translator of one stream.
    pub async fn open_stream(
        mut self,
        target: &Target,
        request: &ClientRequest,
    ) -> Result<StreamSession, PluginError> {
        let translator = self
            .call(AdapterExports::new_translator, (target, request))
            .await?;
        Ok(StreamSession {
            session: self,
            translator,
        })
    }
}

/// A session that owns one `translator` resource for a stream's lifetime.
pub struct StreamSession {
    session: Session,
    translator: ResourceAny,
}

impl StreamSession {
    pub async fn push(
        &mut self,
        bytes: &[u8],
    ) -> Result<Result<StreamOutput, String>, PluginError> {
        self.session
            .call(AdapterExports::push, (self.translator, bytes))
            .await
    }

    pub async fn finish(&mut self) -> Result<Result<StreamOutput, String>, PluginError> {
        self.session
            .call(AdapterExports::finish, (self.translator,))
            .await
    }
}
