//! One request's record: what its log line and the metrics say of it.
//!
//! The front door makes the record when a request arrives and runs the
//! request inside [`scope`], where the router finds it ([`Record::current`])
//! without it being passed through every endpoint. It is shared by
//! whatever still works on the request: the router (the candidates it went
//! through), the attempt that serves it (its usage, its first event, in its
//! hold), and the front door (the id, path and status). It is written once,
//! when the last of them lets go: for a whole answer as the response
//! leaves, for a stream when its body ends, is broken off, or is dropped
//! because the client went away. So a stream's line carries its full
//! duration and tokens.
//!
//! A served request costs the record one allocation (itself) and no
//! string: the log line's text is put together only when the line is
//! enabled.
//!
//! The line never carries a key or message content: only names from the
//! configuration, numbers, and the id the gateway gave the request.

use super::notes::Note;
use crate::config::Model;
use crate::keys::Caller;
use crate::ledger::headers::RateHeaders;
use crate::ledger::{Outcome as Settled, Reservation};
use crate::metrics::meters::{Served, unserved};
use crate::metrics::{FallbackLabels, Outcome, global};
use hyper::Method;
use hyper::header::HeaderValue;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

tokio::task_local! {
    static CURRENT: Arc<Record>;
}

/// Runs `request` with `record` as the record [`Record::current`] finds.
pub async fn scope<F: Future>(record: Arc<Record>, request: F) -> F::Output {
    CURRENT.scope(record, request).await
}

pub struct Record {
    /// When the request arrived: durations are counted from here.
    arrived: Instant,
    inner: Mutex<Inner>,
    /// The request's place among those in flight, given back when the
    /// record is written (a stream's at its end).
    _in_flight: Option<crate::gauge::Place>,
}

#[derive(Default)]
struct Inner {
    /// The alias asked for, when the gateway serves it.
    model: Option<Arc<str>>,
    /// Each candidate that did not serve: skipped or not, and why.
    missed: Vec<(Arc<Model>, bool, &'static str)>,
    fallbacks: u32,
    served: Option<Arc<Served>>,
    usage: Option<(u64, u64)>,
    /// When a stream's first event was ready.
    first_event: Option<Instant>,
    stream: Stream,
    /// Set by the front door; a record it never saw (a benchmark driving
    /// the router directly) is not written.
    answered: Option<Answered>,
    /// Who asked, when the front door knows (gateway keys, tier headers).
    caller: Option<Caller>,
    /// The request's reservation on its key's rates, settled with the
    /// tokens served when the record is written.
    key_hold: Option<Reservation>,
}

/// What the front door knows of the request.
pub struct Answered {
    /// Also the client's `x-request-id`.
    pub id: HeaderValue,
    pub method: Method,
    pub path: String,
    pub status: u16,
    /// Whether it counts in `tollgate_requests_total` (a model request,
    /// not an admin read).
    pub counted: bool,
    /// Written at `debug` rather than `info` (the dashboard's polling).
    pub quiet: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Stream {
    #[default]
    None,
    Open,
    Ended,
    BrokeOff,
}

impl Record {
    /// The record of a request that arrived at `arrived`.
    pub fn new(arrived: Instant) -> Arc<Self> {
        Self::admitted(arrived, None)
    }

    /// The record of a request the front door admitted, holding its place
    /// among the requests in flight.
    pub fn admitted(arrived: Instant, place: Option<crate::gauge::Place>) -> Arc<Self> {
        Arc::new(Record {
            arrived,
            inner: Mutex::default(),
            _in_flight: place,
        })
    }

    /// The record of the request being served (see [`scope`]), or a new
    /// one, never written, outside a scope.
    pub fn current() -> Arc<Self> {
        CURRENT
            .try_with(Arc::clone)
            .unwrap_or_else(|_| Record::new(Instant::now()))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who asked: set by the front door before the request is routed.
    pub fn set_caller(&self, caller: Caller) {
        self.inner().caller = Some(caller);
    }

    /// Who asked, if the front door said.
    pub fn caller(&self) -> Option<Caller> {
        self.inner().caller.clone()
    }

    /// Keeps the request's reservation on its key until the record is
    /// written.
    pub(super) fn hold_key(&self, reservation: Reservation) {
        self.inner().key_hold = Some(reservation);
    }

    /// The front door's part, once the response's head is ready.
    pub fn answered(&self, answered: Answered) {
        self.inner().answered = Some(answered);
    }

    /// The router's part: the alias asked for, the candidates that did not
    /// serve, and the one that did. Counts the fallbacks between them.
    pub(super) fn routed(&self, model: &Arc<str>, notes: &[Note], served: Option<&Arc<Served>>) {
        let mut inner = self.inner();
        inner.model = Some(model.clone());
        inner.served = served.cloned();
        if notes.is_empty() {
            return;
        }
        inner.missed = notes
            .iter()
            .map(|n| (n.model().clone(), n.was_skipped(), n.reason_label()))
            .collect();
        let next = |i: usize| -> Option<Arc<str>> {
            match notes.get(i + 1) {
                Some(note) => Some(note.alias().into()),
                None => served.map(|s| s.served_by().clone()),
            }
        };
        for (i, note) in notes.iter().enumerate() {
            let Some(to) = next(i) else { break };
            inner.fallbacks += 1;
            global()
                .fallbacks
                .get_or_create(&FallbackLabels {
                    from: note.alias().into(),
                    to,
                    reason: note.reason_label(),
                })
                .inc();
        }
    }

    /// The tokens the provider reported for the answer.
    pub(crate) fn usage(&self, usage: Option<(u64, u64)>) {
        if usage.is_some() {
            self.inner().usage = usage;
        }
    }

    /// The answer is a stream and its first event is ready.
    pub(crate) fn stream_started(&self) {
        let mut inner = self.inner();
        inner.first_event = Some(Instant::now());
        inner.stream = Stream::Open;
    }

    /// The stream reached its end (`clean`) or was broken off.
    pub(crate) fn stream_ended(&self, clean: bool) {
        self.inner().stream = if clean {
            Stream::Ended
        } else {
            Stream::BrokeOff
        };
    }
}

impl Inner {
    fn outcome(&self, status: u16) -> Outcome {
        match self.stream {
            Stream::Open => Outcome::Cancelled,
            Stream::BrokeOff => Outcome::Interrupted,
            Stream::None | Stream::Ended => Outcome::of_status(status),
        }
    }

    /// `a:skipped(rpd), b:failed(server), c:served`, for the log line.
    fn attempts(&self) -> String {
        let mut fates: Vec<String> = self
            .missed
            .iter()
            .map(|(model, skipped, reason)| {
                let fate = if *skipped { "skipped" } else { "failed" };
                format!("{}:{fate}({reason})", model.alias)
            })
            .collect();
        if let Some(served) = &self.served {
            fates.push(format!("{}:served", served.served_by()));
        }
        fates.join(", ")
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        settle_key(inner);
        let Some(answered) = inner.answered.take() else {
            return;
        };
        let duration = self.arrived.elapsed();
        let first_token = inner
            .first_event
            .map(|at| at.saturating_duration_since(self.arrived));
        let outcome = inner.outcome(answered.status);
        if answered.counted {
            match &inner.served {
                Some(served) => served.answered(outcome, duration, first_token, inner.usage),
                None => unserved(inner.model.as_ref(), outcome, duration),
            }
            let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000;
            global()
                .activity
                .record(now, inner.fallbacks, outcome != Outcome::Ok);
        }
        write_line(inner, &answered, outcome, duration, first_token);
    }
}

/// Replaces the key's reservation with the tokens the provider reported
/// (a request that nothing served still counts as one request). The
/// settlement is spawned: it may need a round trip to Redis, and the record
/// is dropped where nothing can wait.
fn settle_key(inner: &mut Inner) {
    static NO_HEADERS: RateHeaders = RateHeaders {
        reported: Vec::new(),
        retry_after_ms: None,
    };
    let Some(reservation) = inner.key_hold.take() else {
        return;
    };
    let outcome = match inner.served {
        Some(_) => Settled::Served { usage: inner.usage },
        None => Settled::Failed,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(reservation.settle(outcome, &NO_HEADERS));
        }
        // Outside a runtime it stays counted at its estimate.
        Err(_) => drop(reservation),
    }
}

/// The request's log line (`tollgate::request`). Its text fields are put
/// together only when the line is enabled (inside `event!`).
fn write_line(
    inner: &Inner,
    answered: &Answered,
    outcome: Outcome,
    duration: Duration,
    first_token: Option<Duration>,
) {
    let model = inner.model.as_deref().unwrap_or("");
    let served_by = inner.served.as_ref().map_or("", |s| s.served_by());
    // The gateway key's name, never its secret.
    let key = inner
        .caller
        .as_ref()
        .and_then(|c| c.key.as_ref())
        .map(|k| k.name());
    let millis = |d: Duration| (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let first_token_ms = first_token.map(millis);
    let prompt_tokens = inner.usage.map(|u| u.0);
    let completion_tokens = inner.usage.map(|u| u.1);
    let id = answered.id.to_str().unwrap_or("");
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "tollgate::request",
                $level,
                id,
                method = %answered.method,
                path = %answered.path,
                status = answered.status,
                outcome = outcome.as_str(),
                model,
                served_by,
                key,
                attempts = %inner.attempts(),
                prompt_tokens,
                completion_tokens,
                duration_ms = millis(duration),
                first_token_ms,
                "request"
            )
        };
    }
    if answered.quiet {
        line!(tracing::Level::DEBUG);
    } else {
        line!(tracing::Level::INFO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::Env;
    use crate::config::{Catalog, Model};
    use crate::ledger::Denial;
    use crate::plugins::bindings::FailureKind;

    /// Three enabled chat models, named apart from other tests' (the
    /// counters are the process's).
    fn models() -> Vec<Arc<Model>> {
        let dir = tempfile::tempdir().unwrap();
        let models: String = ["rec-a", "rec-b", "rec-c"]
            .iter()
            .map(|m| format!("  - {{ alias: {m}, model: {m}, mode: chat }}\n"))
            .collect();
        std::fs::write(
            dir.path().join("p.yaml"),
            format!("name: p\nflag: P\nadapter: openai\nbase_url: http://x/v1\ntier: free\nmodels:\n{models}"),
        )
        .unwrap();
        let catalog =
            Catalog::load(dir.path(), &Env::from_pairs(&[("P", "1")]), &|_| true).unwrap();
        catalog.models.clone()
    }

    fn fallbacks(from: &str, to: &str, reason: &'static str) -> u64 {
        global()
            .fallbacks
            .get_or_create(&FallbackLabels {
                from: from.into(),
                to: to.into(),
                reason,
            })
            .get()
    }

    #[test]
    fn each_move_down_the_chain_is_a_fallback_and_every_fate_is_listed() {
        let m = models();
        let cooling = Denial::Cooling {
            scope: "rec-a".into(),
            until: 9_000,
            cause: "a 429".into(),
            now: 0,
        };
        let notes = [
            Note::skipped(&m[0], &cooling),
            Note::failed(&m[1], "HTTP 500".into(), FailureKind::Server),
        ];
        let served = Arc::new(Served::new("rec-a", "rec-c"));
        let record = Record::new(Instant::now());
        record.routed(&Arc::from("rec-a"), &notes, Some(&served));
        let inner = record.inner();
        assert_eq!(
            inner.attempts(),
            "rec-a:skipped(cooldown), rec-b:failed(server), rec-c:served"
        );
        assert_eq!(inner.fallbacks, 2);
        assert_eq!(fallbacks("rec-a", "rec-b", "cooldown"), 1);
        assert_eq!(fallbacks("rec-b", "rec-c", "server"), 1);
    }

    #[test]
    fn a_last_candidate_that_failed_moved_nowhere() {
        let m = models();
        let notes = [
            Note::failed(&m[2], "429".into(), FailureKind::RateLimited),
            Note::failed(&m[0], "429".into(), FailureKind::RateLimited),
        ];
        let record = Record::new(Instant::now());
        record.routed(&Arc::from("rec-c"), &notes, None);
        assert_eq!(record.inner().fallbacks, 1);
        assert_eq!(fallbacks("rec-c", "rec-a", "rate_limited"), 1);
        assert_eq!(fallbacks("rec-a", "", "rate_limited"), 0);
    }

    #[test]
    fn a_stream_ends_as_it_ended_whatever_its_status_said() {
        let outcome = |stream, status| {
            let inner = Inner {
                stream,
                ..Inner::default()
            };
            inner.outcome(status)
        };
        assert_eq!(outcome(Stream::None, 200), Outcome::Ok);
        assert_eq!(outcome(Stream::Ended, 200), Outcome::Ok);
        assert_eq!(outcome(Stream::Open, 200), Outcome::Cancelled);
        assert_eq!(outcome(Stream::BrokeOff, 200), Outcome::Interrupted);
        assert_eq!(outcome(Stream::None, 429), Outcome::RateLimited);
        assert_eq!(outcome(Stream::None, 404), Outcome::ClientError);
        assert_eq!(outcome(Stream::None, 502), Outcome::Failed);
    }
}
