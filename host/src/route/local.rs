//! Managed local backends in the request path. Before an attempt on one,
//! the router takes a job slot and a GPU lease ([`crate::gpu`]), unloading
//! idle backends through their adapters to make room, and has the backend
//! load the model when it is not resident. The adapter plans each load and
//! unload as a sequence of HTTP calls (its `control` export); the host makes
//! the calls, as it makes every call.

use crate::api::uploads::Uploads;
use crate::config::Model;
use crate::gpu::table::{Ask, Eviction, Unload};
use crate::gpu::{Control, Granted, LeaseGuard, Refusal};
use crate::plugins::bindings::{ControlAction, ControlStep, UpstreamResponse};
use crate::route::{Gateway, target_of};
use crate::upstream::{self, Pace, UpstreamError};

/// A load or unload that plans more calls than this is broken.
const MAX_CONTROL_STEPS: u32 = 64;

/// Why a load or unload failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The backend does not answer at all: whatever it held is gone.
    #[error("the backend is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
}

impl Gateway {
    /// Takes what an attempt on `model` needs of its local backend: nothing
    /// for a cloud model.
    pub(crate) async fn hold_local(&self, model: &Model) -> Result<Option<Granted>, Refusal> {
        let Some(local) = &model.provider.local else {
            return Ok(None);
        };
        let ask = Ask {
            backend: model.provider.name.clone(),
            model: model.model.clone(),
            vram_mb: model.gpu.as_ref().map_or(0, |g| g.cuda_mb()),
            max_loaded: local.max_loaded,
        };
        let deadline = tokio::time::Instant::now() + local.queue_timeout();
        let granted = self
            .leases
            .acquire(ask, local.concurrency, deadline, self)
            .await?;
        Ok(Some(granted))
    }

    /// Has the backend load `model` for a lease that just made it resident.
    /// Should the load fail, or the request go away before it is done, the
    /// model is taken off the lease again, so the next job loads it anew.
    pub(crate) async fn load(&self, model: &Model, granted: &Granted) -> Result<(), ControlError> {
        /// Forgets the model unless the load was confirmed.
        struct Unconfirmed<'a>(Option<&'a LeaseGuard>);
        impl Drop for Unconfirmed<'_> {
            fn drop(&mut self) {
                if let Some(lease) = self.0 {
                    lease.forget();
                }
            }
        }
        let mut pending = Unconfirmed(Some(&granted.lease));
        self.control(model, ControlAction::Load).await?;
        pending.0 = None;
        Ok(())
    }

    /// Runs `model`'s adapter's load or unload sequence to its end.
    pub(crate) async fn control(
        &self,
        model: &Model,
        action: ControlAction,
    ) -> Result<(), ControlError> {
        let adapter = self
            .plugins
            .adapter(&model.provider.adapter)
            .ok_or_else(|| {
                ControlError::Failed(format!(
                    "adapter `{}` is not loaded",
                    model.provider.adapter
                ))
            })?;
        let target = target_of(model);
        let mut session = self
            .plugins
            .session(adapter)
            .await
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        let mut previous: Option<UpstreamResponse> = None;
        for step in 0..MAX_CONTROL_STEPS {
            let next = session
                .control(&target, action, step, previous.as_ref())
                .await
                .map_err(|e| ControlError::Failed(e.to_string()))?
                .map_err(ControlError::Failed)?;
            let request = match next {
                ControlStep::Done => return Ok(()),
                ControlStep::Call(request) => request,
            };
            let sent = self
                .upstreams
                .send(&model.provider, request, &Uploads::default())
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(UpstreamError::Connect(e)) => return Err(ControlError::Unreachable(e)),
                Err(e) => return Err(ControlError::Failed(e.to_string())),
            };
            let pace = Pace::new(&model.provider.timeouts);
            let answer = upstream::read_response(response, pace).await;
            previous = Some(
                answer
                    .whole()
                    .map_err(|e| ControlError::Failed(e.to_string()))?,
            );
        }
        Err(ControlError::Failed(format!(
            "the adapter planned more than {MAX_CONTROL_STEPS} calls"
        )))
    }

    /// The catalogue's model for a backend's upstream model id; any model of
    /// the backend when that one is gone (after a reload), since an unload
    /// frees the backend either way.
    fn backend_model(&self, backend: &str, model: &str) -> Option<&Model> {
        let of_backend = || {
            self.catalog
                .models
                .iter()
                .filter(|m| m.provider.name == backend)
        };
        of_backend()
            .find(|m| m.model == model)
            .or_else(|| of_backend().next())
            .map(|m| m.as_ref())
    }
}

impl Control for Gateway {
    async fn unload(&self, eviction: &Eviction) -> Unload {
        for id in &eviction.models {
            let Some(model) = self.backend_model(&eviction.backend, id) else {
                tracing::warn!(backend = %eviction.backend, "the backend is no longer configured; dropping its lease");
                return Unload::Done;
            };
            match self.control(model, ControlAction::Unload).await {
                Ok(()) => {}
                Err(ControlError::Unreachable(e)) => {
                    tracing::warn!(backend = %eviction.backend, "unreachable while unloading ({e}); taking its memory as freed");
                    return Unload::Done;
                }
                Err(ControlError::Failed(e)) => {
                    let e = self.redactor.scrub(&e);
                    tracing::warn!(backend = %eviction.backend, model = %id, "unloading failed: {e}");
                    return Unload::Failed;
                }
            }
        }
        Unload::Done
    }
}
