//! One plugin instance serving one attempt (or one stream).
//!
//! Every call gets a fresh CPU deadline. A trap poisons the instance, so the
//! session is consumed by the attempt and dropped afterwards; the caller moves
//! on to the next candidate.

use super::bindings::{
    AdapterPlugin, ClientRequest, ControlAction, ControlStep, Failure, Reply, StreamOutput, Target,
    UpstreamRequest, UpstreamResponse,
};
use super::sandbox::Sandbox;
use super::{LoadedAdapter, PluginError};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

pub struct Session {
    adapter: Arc<LoadedAdapter>,
    store: Store<Sandbox>,
    bindings: AdapterPlugin,
    deadline_ticks: u64,
    _slot: OwnedSemaphorePermit,
}

impl Session {
    pub(super) fn new(
        adapter: Arc<LoadedAdapter>,
        store: Store<Sandbox>,
        bindings: AdapterPlugin,
        deadline_ticks: u64,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Session {
            adapter,
            store,
            bindings,
            deadline_ticks,
            _slot: slot,
        }
    }

    /// Gives the next call a full CPU deadline.
    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    /// Turns a trap into a [`PluginError`] that names the plugin and, when it
    /// panicked, its panic message.
    fn fault(&self, error: wasmtime::Error) -> PluginError {
        PluginError::from_trap(&self.adapter.name, error, self.store.data().last_words())
    }

    pub async fn build_request(
        &mut self,
        target: &Target,
        request: &ClientRequest,
    ) -> Result<Result<UpstreamRequest, String>, PluginError> {
        self.arm();
        let exports = self.bindings.tollgate_plugin_adapter();
        let result = exports
            .call_build_request(&mut self.store, target, request)
            .await;
        result.map_err(|e| self.fault(e))
    }

    pub async fn translate_response(
        &mut self,
        target: &Target,
        request: &ClientRequest,
        response: &UpstreamResponse,
    ) -> Result<Result<Reply, String>, PluginError> {
        self.arm();
        let exports = self.bindings.tollgate_plugin_adapter();
        let result = exports
            .call_translate_response(&mut self.store, target, request, response)
            .await;
        result.map_err(|e| self.fault(e))
    }

    pub async fn classify_failure(
        &mut self,
        target: &Target,
        response: &UpstreamResponse,
    ) -> Result<Failure, PluginError> {
        self.arm();
        let exports = self.bindings.tollgate_plugin_adapter();
        let result = exports
            .call_classify_failure(&mut self.store, target, response)
            .await;
        result.map_err(|e| self.fault(e))
    }

    /// The next call of a local backend's load or unload sequence.
    pub async fn control(
        &mut self,
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<&UpstreamResponse>,
    ) -> Result<Result<ControlStep, String>, PluginError> {
        self.arm();
        let exports = self.bindings.tollgate_plugin_adapter();
        let result = exports
            .call_control(&mut self.store, target, action, step, previous)
            .await;
        result.map_err(|e| self.fault(e))
    }

    /// Turns this session into the translator of one stream.
    pub async fn open_stream(
        mut self,
        target: &Target,
        request: &ClientRequest,
    ) -> Result<StreamSession, PluginError> {
        self.arm();
        let exports = self.bindings.tollgate_plugin_adapter();
        let result = exports
            .translator()
            .call_constructor(&mut self.store, target, request)
            .await;
        match result {
            Ok(translator) => Ok(StreamSession {
                session: self,
                translator,
            }),
            Err(e) => Err(self.fault(e)),
        }
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
        let session = &mut self.session;
        session.arm();
        let exports = session.bindings.tollgate_plugin_adapter();
        let result = exports
            .translator()
            .call_push(&mut session.store, self.translator, bytes)
            .await;
        result.map_err(|e| session.fault(e))
    }

    pub async fn finish(&mut self) -> Result<Result<StreamOutput, String>, PluginError> {
        let session = &mut self.session;
        session.arm();
        let exports = session.bindings.tollgate_plugin_adapter();
        let result = exports
            .translator()
            .call_finish(&mut session.store, self.translator)
            .await;
        result.map_err(|e| session.fault(e))
    }
}
