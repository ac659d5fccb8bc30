//! The ledger's side of one attempt and what its failure means: a
//! [`Hold`] carries the reservation, the provider's rate-limit headers and
//! the local backend's slot until the attempt (or its stream) ends, and is
//! settled exactly once with the [`Outcome`] the failure counts as.

use super::record::Record;
use crate::api::ApiError;
use crate::gpu::Granted;
use crate::ledger::headers::RateHeaders;
use crate::ledger::{Outcome, Reservation};
use crate::plugins::bindings::FailureKind;
use crate::upstream::UpstreamError;
use std::sync::Arc;

/// The ledger's side of one attempt, settled exactly once however the
/// attempt ends (a stream carries it to its last chunk).
pub(crate) struct Hold {
    pub(super) reservation: Option<Reservation>,
    /// The attempt's price, reserved on its key's budget (paid candidates
    /// of a keyed request only).
    pub(super) spend: Option<Reservation>,
    pub(super) headers: RateHeaders,
    /// Whether the request reached the provider (it then counts).
    pub(super) sent: bool,
    /// The provider's HTTP status, once it answered.
    pub(super) status: Option<u16>,
    /// The local backend's job slot and GPU lease, given back when the
    /// attempt (or its stream) ends.
    pub(super) local: Option<Granted>,
    /// The request's record, told the usage and how a stream ended.
    record: Arc<Record>,
}

impl Hold {
    /// A hold on a fresh reservation, before anything is sent.
    pub(super) fn new(reservation: Reservation, record: &Arc<Record>) -> Self {
        Hold {
            reservation: Some(reservation),
            spend: None,
            headers: RateHeaders::default(),
            sent: false,
            status: None,
            local: None,
            record: record.clone(),
        }
    }

    pub(crate) async fn settle(&mut self, outcome: Outcome) {
        if let Outcome::Served { usage } = outcome {
            self.record.usage(usage);
        }
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(outcome, &self.headers).await;
        }
        if let Some(spend) = self.spend.take() {
            // Only a served attempt costs money; the provider's headers
            // and failures say nothing of the key's budget.
            let spent = match outcome {
                Outcome::Served { .. } => outcome,
                _ => Outcome::NotSent,
            };
            spend.settle(spent, &RateHeaders::default()).await;
        }
    }

    /// Moves the hold into a body that outlives the attempt (a stream,
    /// whose first event is ready).
    pub(super) fn take(&mut self) -> Hold {
        self.record.stream_started();
        Hold {
            reservation: self.reservation.take(),
            spend: self.spend.take(),
            headers: std::mem::take(&mut self.headers),
            sent: true,
            status: self.status,
            local: self.local.take(),
            record: self.record.clone(),
        }
    }

    /// The stream this hold went with reached its end (`clean`) or was
    /// broken off.
    pub(crate) fn stream_ended(&self, clean: bool) {
        self.record.stream_ended(clean);
    }

    /// Reads the provider's rate-limit headers off a response.
    pub(super) fn read_headers(&mut self, response: &reqwest::Response, now: u64) {
        self.sent = true;
        self.status = Some(response.status().as_u16());
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        self.headers = RateHeaders::parse(headers, now);
    }
}

/// Why one attempt did not serve the request.
pub(super) enum Failed {
    /// The client's own fault: answer with this and stop.
    Final(ApiError),
    /// Note it and try the next candidate.
    Next { reason: String, kind: FailureKind },
}

impl Failed {
    pub(super) fn next(kind: FailureKind, reason: impl ToString) -> Self {
        Failed::Next {
            reason: reason.to_string(),
            kind,
        }
    }
}

impl From<crate::plugins::PluginError> for Failed {
    /// Every adapter shares the instance slots, so a request that found
    /// none free within the queue deadline would wait as long again at
    /// the next candidate: it is answered 503 now.
    fn from(e: crate::plugins::PluginError) -> Self {
        match e {
            crate::plugins::PluginError::Busy { .. } => {
                Failed::Final(ApiError::overloaded(e.to_string()))
            }
            e => Failed::next(FailureKind::Other, e),
        }
    }
}

impl From<UpstreamError> for Failed {
    fn from(e: UpstreamError) -> Self {
        let kind = match e {
            UpstreamError::Connect(_) | UpstreamError::ResponseTimeout(_) => {
                FailureKind::Unavailable
            }
            _ => FailureKind::Other,
        };
        Failed::next(kind, e)
    }
}

/// How a failed attempt counts in the ledger.
pub(super) fn outcome_of(failed: &Failed, sent: bool) -> Outcome {
    match failed {
        _ if !sent => Outcome::NotSent,
        Failed::Next {
            kind: FailureKind::RateLimited,
            ..
        } => Outcome::RateLimited,
        Failed::Next {
            kind: FailureKind::QuotaExhausted,
            ..
        } => Outcome::QuotaExhausted,
        _ => Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(kind: FailureKind) -> Failed {
        Failed::next(kind, "x")
    }

    #[test]
    fn a_failure_counts_by_its_kind_once_the_request_was_sent() {
        let counted = outcome_of;
        assert_eq!(
            counted(&next(FailureKind::RateLimited), true),
            Outcome::RateLimited
        );
        assert_eq!(
            counted(&next(FailureKind::QuotaExhausted), true),
            Outcome::QuotaExhausted
        );
        assert_eq!(counted(&next(FailureKind::Server), true), Outcome::Failed);
        let final_error = Failed::Final(ApiError::bad_request("no"));
        assert_eq!(counted(&final_error, true), Outcome::Failed);
        // Whatever it was, a request that never left costs nothing.
        for failed in [
            next(FailureKind::RateLimited),
            next(FailureKind::Other),
            final_error,
        ] {
            assert_eq!(counted(&failed, false), Outcome::NotSent);
        }
    }

    #[test]
    fn transport_errors_fail_over_as_unavailable_or_other() {
        let kind = |e: UpstreamError| match Failed::from(e) {
            Failed::Next { kind, .. } => kind,
            Failed::Final(_) => panic!("a transport error is never the client's fault"),
        };
        assert_eq!(
            kind(UpstreamError::Connect("refused".into())),
            FailureKind::Unavailable
        );
        assert_eq!(
            kind(UpstreamError::Invalid("bad url".into())),
            FailureKind::Other
        );
    }
}
