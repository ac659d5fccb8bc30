//! One attempt on one candidate: the adapter builds the upstream request,
//! the host sends it, and the answer is read back through the adapter —
//! whole (JSON), as a stream committed at its first client chunk, or as
//! binary relayed as it arrives; a failed answer is classified by the
//! adapter into a reason to fail over or an error for the client.

use super::hold::{Failed, Hold};
use super::notes::{kind_name, set_header};
use super::relay::{BinaryRelay, Committed, Relay};
use super::table::Hop;
use super::{Gateway, Inbound};
use crate::api::{ApiError, Body, json_response};
use crate::config::{Feature, Model};
use crate::ledger::Outcome;
use crate::plugins::Session;
use crate::plugins::bindings::{self, ClientRequest, FailureKind, ResponseKind, Target};
use crate::upstream::{self, Pace};
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};

impl Gateway {
    /// Sends one attempt through the hop's adapter and reads its answer.
    pub(super) async fn attempt(
        &self,
        hop: &Hop,
        inbound: &Inbound,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let (model, request) = (&*hop.model, &inbound.request);
        let adapter = hop.adapter.as_ref().ok_or_else(|| {
            Failed::next(
                FailureKind::Other,
                format!("adapter `{}` is not loaded", model.provider.adapter),
            )
        })?;
        let target = target_of(model);
        let mut session = self.plugins.session(adapter).await?;
        let native = inbound
            .native
            .as_ref()
            .filter(|n| adapter.speaks(n.protocol.name));
        let built = match native {
            Some(n) => {
                session
                    .build_native_request(&target, n.protocol.name, &n.headers, &n.body, n.stream)
                    .await?
            }
            None => session.build_request(&target, request).await?,
        };
        let upstream_request = match built {
            Ok(built) => built,
            Err(message) => {
                return Err(Failed::Final(ApiError::bad_request(
                    self.redactor.scrub(&message),
                )));
            }
        };
        let kind = upstream_request.response;
        let sent = self
            .upstreams
            .send(&model.provider, upstream_request, &inbound.uploads)
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                // Past the connect, the provider may have seen the request.
                hold.sent = !e.before_sending();
                return Err(e.into());
            }
        };
        hold.read_headers(&response, self.ledger.now());
        if !response.status().is_success() {
            return Err(self.failure(model, session, &target, response, hold).await);
        }
        if let Some(native) = native {
            return self
                .native_answer(model, native, kind, response, hold)
                .await;
        }
        match kind {
            ResponseKind::EventStream => {
                self.stream(model, session, &target, request, response, hold)
                    .await
            }
            ResponseKind::Json => {
                self.whole(model, session, &target, request, response, hold)
                    .await
            }
            ResponseKind::Binary => Ok(self.binary(model, response, hold)),
        }
    }

    /// Hands a binary body (speech audio) to the client as it arrives.
    fn binary(
        &self,
        model: &Model,
        response: reqwest::Response,
        hold: &mut Hold,
    ) -> Response<Body> {
        BinaryRelay {
            response,
            pace: Pace::new(&model.provider.timeouts),
            alias: model.alias.clone(),
            redactor: self.redactor.clone(),
            hold: hold.take(),
        }
        .into_response()
    }

    /// Reads a failed response and asks the adapter what it means.
    async fn failure(
        &self,
        model: &Model,
        mut session: Session,
        target: &Target,
        response: reqwest::Response,
        hold: &mut Hold,
    ) -> Failed {
        let pace = Pace::new(&model.provider.timeouts);
        let upstream = upstream::read_response(response, pace).await.response;
        let status = upstream.status;
        let failure = match session.classify_failure(target, &upstream).await {
            Ok(failure) => failure,
            Err(e) => return Failed::next(FailureKind::Other, format!("HTTP {status}; {e}")),
        };
        // An adapter may read when to come back from where its provider
        // says it (a body field, a header of its own): the cooldown follows
        // it when the standard headers said nothing.
        hold.headers.retry_after_ms = hold.headers.retry_after_ms.or(failure.retry_after_ms);
        let message = self.redactor.scrub(&failure.message);
        if failure.kind == FailureKind::BadRequest {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Failed::Final(ApiError::new(
                status,
                "invalid_request_error",
                "upstream_rejected_request",
                message,
            ));
        }
        let retry = failure
            .retry_after_ms
            .map(|ms| format!(", retry after {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        Failed::next(
            failure.kind,
            format!(
                "{} (HTTP {status}{retry}): {message}",
                kind_name(failure.kind)
            ),
        )
    }

    async fn whole(
        &self,
        model: &Model,
        mut session: Session,
        target: &Target,
        request: &ClientRequest,
        response: reqwest::Response,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let pace = Pace::new(&model.provider.timeouts);
        let upstream = upstream::read_response(response, pace).await.whole()?;
        let reply = session
            .translate_response(target, request, &upstream)
            .await?
            .map_err(|e| {
                Failed::next(
                    FailureKind::Other,
                    format!("the adapter could not translate the answer: {e}"),
                )
            })?;
        log_usage(model, reply.usage);
        hold.settle(Outcome::Served {
            usage: reply.usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        })
        .await;
        let mut out = json_response(StatusCode::OK, reply.body);
        set_header(&mut out, CONTENT_TYPE.as_str(), &reply.content_type);
        Ok(out)
    }

    /// Reads until the first client chunk is ready (falling back on any
    /// failure so far), then hands the rest of the stream to a pump task.
    async fn stream(
        &self,
        model: &Model,
        session: Session,
        target: &Target,
        request: &ClientRequest,
        mut response: reqwest::Response,
        hold: &mut Hold,
    ) -> Result<Response<Body>, Failed> {
        let mut pace = Pace::new(&model.provider.timeouts);
        let mut translator = session.open_stream(target, request).await?;
        let mut first = Vec::new();
        let mut usage = None;
        let (done, ended) = loop {
            let (output, ended) = match upstream::next_chunk(&mut response, &mut pace).await? {
                Some(bytes) => (translator.push(&bytes).await?, false),
                None => (translator.finish().await?, true),
            };
            let output = output.map_err(|e| {
                Failed::next(
                    FailureKind::Other,
                    format!("the adapter rejected the stream: {e}"),
                )
            })?;
            usage = output.usage.or(usage);
            first.extend(output.chunks);
            if ended || output.done || !first.is_empty() {
                break (ended || output.done, ended);
            }
        };
        if first.is_empty() {
            return Err(Failed::next(
                FailureKind::Server,
                "the upstream closed the stream without sending anything",
            ));
        }
        let relay = Relay::new(Committed {
            translator,
            response,
            pace,
            usage,
            alias: model.alias.clone(),
            redactor: self.redactor.clone(),
            hold: hold.take(),
            first,
            done,
            upstream_ended: ended,
        });
        Ok(relay.into_response())
    }
}

/// The first field of the request that `model` refuses.
pub(super) fn refused(model: &Model, features: &[Feature]) -> Option<Feature> {
    features
        .iter()
        .copied()
        .find(|f| model.unsupported.contains(f))
}

fn log_usage(model: &Model, usage: Option<bindings::Usage>) {
    if let Some(usage) = usage {
        tracing::debug!(alias = %model.alias, prompt = usage.prompt_tokens, completion = usage.completion_tokens, "usage");
    }
}

pub fn wit_mode(mode: crate::config::Mode) -> bindings::Mode {
    use crate::config::Mode as M;
    match mode {
        M::Chat => bindings::Mode::Chat,
        M::Embedding => bindings::Mode::Embedding,
        M::Rerank => bindings::Mode::Rerank,
        M::Transcription => bindings::Mode::Transcription,
        M::Speech => bindings::Mode::Speech,
        M::Image => bindings::Mode::Image,
    }
}

pub fn target_of(model: &Model) -> Target {
    Target {
        provider: model.provider.name.clone(),
        alias: model.alias.clone(),
        model: model.model.clone(),
        base_url: model.provider.base_url.clone(),
        mode: wit_mode(model.mode),
        options: model.provider.options.clone(),
    }
}
