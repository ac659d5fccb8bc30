//! What became of each candidate that did not serve, and the answer a
//! client gets from it: the route headers on a success, and on failure a
//! 400, 429 (with `retry-after`) or 502 that lists every candidate's fate.

use crate::api::{ApiError, Body};
use crate::config::{Feature, Model};
use crate::gpu::Refusal;
use crate::ledger::Denial;
use crate::plugins::bindings::FailureKind;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use std::sync::Arc;

/// Response header naming the alias that served the request.
pub const PROVIDER_HEADER: &str = "x-tollgate-provider";
/// Response header counting the attempts made, the serving one included.
pub const ATTEMPTS_HEADER: &str = "x-tollgate-attempts";
/// Response header listing candidates skipped for quota (`alias:window`).
pub const SKIPPED_HEADER: &str = "x-tollgate-skipped";
/// Response header saying, for each candidate the request reached, why it
/// went where it did: `a=skipped(rpm), b=skipped(tier), c=failed(server),
/// d=served`.
pub const ROUTE_HEADER: &str = "x-tollgate-route";

/// The skips that guard money: a 402 when they left nothing to serve.
const PAYMENT_SKIPS: [&str; 2] = ["tier", "budget"];

/// What became of one candidate that did not serve the request.
pub(super) struct Note {
    model: Arc<Model>,
    pub(super) reason: String,
    kind: FailureKind,
    /// Skipped by the ledger, no request sent: the window that was full,
    /// or `cooldown` (for the `x-tollgate-skipped` header).
    skipped: Option<&'static str>,
    /// When it may have room again (ms), if known.
    retry_at: Option<u64>,
}

impl Note {
    pub(super) fn skipped(model: &Arc<Model>, denial: &Denial) -> Self {
        Note {
            model: model.clone(),
            reason: denial.to_string(),
            kind: FailureKind::RateLimited,
            skipped: Some(match denial {
                Denial::Full { window, .. } => window,
                Denial::Cooling { .. } => "cooldown",
            }),
            retry_at: denial.retry_at(),
        }
    }

    /// Skipped because the request carries a field the model refuses.
    pub(super) fn refused(model: &Arc<Model>, feature: Feature) -> Self {
        Note {
            model: model.clone(),
            reason: format!("does not accept `{}`", feature.as_str()),
            kind: FailureKind::BadRequest,
            skipped: Some(feature.as_str()),
            retry_at: None,
        }
    }

    /// Skipped because its local backend had no room or slot in time.
    pub(super) fn busy(model: &Arc<Model>, refusal: &Refusal) -> Self {
        Note {
            model: model.clone(),
            reason: format!("local backend busy: {refusal}"),
            kind: FailureKind::Unavailable,
            skipped: Some("gpu"),
            retry_at: None,
        }
    }

    /// Skipped because the request may not be served from its tier.
    pub(super) fn tier(model: &Arc<Model>, allowed: &[crate::config::Tier]) -> Self {
        let allowed: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
        Note {
            model: model.clone(),
            reason: format!(
                "skipped: its tier `{}` is not among this request's tiers ({})",
                model.tier.as_str(),
                allowed.join(", ")
            ),
            kind: FailureKind::QuotaExhausted,
            skipped: Some("tier"),
            retry_at: None,
        }
    }

    /// Skipped because the key's budget has no room for it.
    pub(super) fn budget(model: &Arc<Model>, key: &str, denial: &Denial) -> Self {
        let (used, limit) = match denial {
            Denial::Full { full, .. } => (full.used, full.limit),
            Denial::Cooling { .. } => (0, 0),
        };
        Note {
            model: model.clone(),
            reason: format!(
                "skipped: a paid candidate, and the key `{key}` has spent {} of its {} monthly budget",
                crate::keys::usd(used as f64 / 1e6),
                crate::keys::usd(limit as f64 / 1e6)
            ),
            kind: FailureKind::QuotaExhausted,
            skipped: Some("budget"),
            retry_at: None,
        }
    }

    /// When it may be tried again, if known.
    pub(super) fn retry_at(mut self, at: Option<u64>) -> Self {
        self.retry_at = at;
        self
    }

    pub(super) fn alias(&self) -> &str {
        &self.model.alias
    }

    /// Why it did not serve, as a metric's label: the window or check that
    /// skipped it, or the kind of its failure.
    pub(super) fn reason_label(&self) -> &'static str {
        self.skipped.unwrap_or_else(|| kind_label(self.kind))
    }

    pub(super) fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Whether it was skipped without a request sent.
    pub(super) fn was_skipped(&self) -> bool {
        self.skipped.is_some()
    }

    pub(super) fn failed(model: &Arc<Model>, reason: String, kind: FailureKind) -> Self {
        Note {
            model: model.clone(),
            reason,
            kind,
            skipped: None,
            retry_at: None,
        }
    }
}

/// The answer when no candidate served: 429 when every one was rate
/// limited or out of quota (with `retry-after` when the ledger knows),
/// else 502; the message lists what happened to each.
pub(super) fn exhausted(alias: &str, notes: &[Note], now: u64) -> Response<Body> {
    let attempts = notes.iter().filter(|n| n.skipped.is_none()).count();
    let retry_at = notes.iter().filter_map(|n| n.retry_at).min();
    let mut response = exhausted_error(alias, notes).into_response();
    set_header(&mut response, ATTEMPTS_HEADER, &attempts.to_string());
    set_skipped(&mut response, notes);
    set_header(&mut response, ROUTE_HEADER, &route_line(notes, None));
    if response.status() == StatusCode::TOO_MANY_REQUESTS
        && let Some(at) = retry_at
    {
        let seconds = at.saturating_sub(now).div_ceil(1000).max(1);
        set_header(&mut response, "retry-after", &seconds.to_string());
    }
    response
}

/// The error when no candidate served, by what became of them.
fn exhausted_error(alias: &str, notes: &[Note]) -> ApiError {
    // Candidates that refuse a field of the request say nothing of the
    // others' limits: the answer is 400 only when every candidate refused.
    let refused = |n: &&Note| n.kind == FailureKind::BadRequest && n.skipped.is_some();
    let tried: Vec<&Note> = notes.iter().filter(|n| !refused(n)).collect();
    let all_refused = !notes.is_empty() && tried.is_empty();
    let guarded = notes
        .iter()
        .any(|n| n.skipped.is_some_and(|s| PAYMENT_SKIPS.contains(&s)));
    let all_limited = !tried.is_empty()
        && tried.iter().all(|n| {
            matches!(
                n.kind,
                FailureKind::RateLimited | FailureKind::QuotaExhausted
            )
        });
    let detail: Vec<String> = notes
        .iter()
        .enumerate()
        .map(|(i, note)| {
            format!(
                "{}. {} ({}): {}",
                i + 1,
                note.model.alias,
                note.model.provider.name,
                note.reason
            )
        })
        .collect();
    let message = format!(
        "every candidate for `{alias}` failed: {}",
        detail.join("; ")
    );
    if all_refused {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_by_every_candidate",
            format!(
                "no candidate for `{alias}` accepts this request: {}",
                detail.join("; ")
            ),
        )
    } else if guarded {
        ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "paid_candidates_refused",
            format!(
                "only paid candidates could serve `{alias}`, and this request may not spend money (its tiers or its key's budget): {}",
                detail.join("; ")
            ),
        )
    } else if all_limited {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            message,
        )
    } else {
        ApiError::bad_gateway("all_candidates_failed", message)
    }
}

pub(super) fn kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RateLimited => "rate limited",
        FailureKind::QuotaExhausted => "quota exhausted",
        FailureKind::Auth => "authentication failed",
        FailureKind::BadRequest => "bad request",
        FailureKind::NotFound => "not found",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Server => "server error",
        FailureKind::Other => "failed",
    }
}

/// A failure's kind as a label value.
fn kind_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::RateLimited => "rate_limited",
        FailureKind::QuotaExhausted => "quota_exhausted",
        FailureKind::Auth => "auth",
        FailureKind::BadRequest => "bad_request",
        FailureKind::NotFound => "not_found",
        FailureKind::Unavailable => "unavailable",
        FailureKind::Server => "server",
        FailureKind::Other => "other",
    }
}

pub(super) fn with_route(
    mut response: Response<Body>,
    alias: &str,
    notes: &[Note],
) -> Response<Body> {
    let attempts = notes.iter().filter(|n| n.skipped.is_none()).count() + 1;
    set_header(&mut response, PROVIDER_HEADER, alias);
    set_header(&mut response, ATTEMPTS_HEADER, &attempts.to_string());
    set_skipped(&mut response, notes);
    set_header(&mut response, ROUTE_HEADER, &route_line(notes, Some(alias)));
    response
}

/// Each candidate's fate in order, the one that served last.
fn route_line(notes: &[Note], served: Option<&str>) -> String {
    let mut fates: Vec<String> = notes
        .iter()
        .map(|n| {
            let fate = if n.skipped.is_some() {
                "skipped"
            } else {
                "failed"
            };
            format!("{}={fate}({})", n.model.alias, n.reason_label())
        })
        .collect();
    if let Some(alias) = served {
        fates.push(format!("{alias}=served"));
    }
    fates.join(", ")
}

fn set_skipped(response: &mut Response<Body>, notes: &[Note]) {
    let skipped: Vec<String> = notes
        .iter()
        .filter_map(|n| n.skipped.map(|tag| format!("{}:{tag}", n.model.alias)))
        .collect();
    if !skipped.is_empty() {
        set_header(response, SKIPPED_HEADER, &skipped.join(", "));
    }
}

pub(super) fn set_header(response: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        hyper::header::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Catalog;
    use crate::config::env::Env;

    /// Two enabled chat models, `a` and `b`.
    fn models() -> (Arc<Model>, Arc<Model>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            "name: p\nflag: P\nadapter: openai\nbase_url: http://x/v1\ntier: free\nmodels:\n  - { alias: a, model: a, mode: chat }\n  - { alias: b, model: b, mode: chat }\n",
        )
        .unwrap();
        let catalog =
            Catalog::load(dir.path(), &Env::from_pairs(&[("P", "1")]), &|_| true).unwrap();
        (catalog.models[0].clone(), catalog.models[1].clone())
    }

    fn cooling(until: u64) -> Denial {
        Denial::Cooling {
            scope: "a".into(),
            until,
            cause: "a 429".into(),
            now: 0,
        }
    }

    fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn every_candidate_limited_is_a_429_with_the_soonest_retry() {
        let (a, b) = models();
        let notes = [
            Note::skipped(&a, &cooling(9_000)),
            Note::failed(
                &b,
                "rate limited (HTTP 429)".into(),
                FailureKind::RateLimited,
            ),
        ];
        let response = exhausted("a", &notes, 1_500);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "retry-after"), Some("8"));
        assert_eq!(header(&response, ATTEMPTS_HEADER), Some("1"));
        assert_eq!(header(&response, SKIPPED_HEADER), Some("a:cooldown"));
    }

    #[test]
    fn a_candidate_that_failed_otherwise_makes_it_a_502_listing_each() {
        let (a, b) = models();
        let notes = [
            Note::skipped(&a, &cooling(9_000)),
            Note::failed(&b, "server error (HTTP 500)".into(), FailureKind::Server),
        ];
        let error = exhausted_error("a", &notes);
        assert_eq!(error.status, StatusCode::BAD_GATEWAY);
        assert_eq!(error.code, "all_candidates_failed");
        assert!(error.message.contains("1. a (p): "), "{}", error.message);
        assert!(error.message.contains("2. b (p): server error (HTTP 500)"));
        let response = exhausted("a", &notes, 0);
        assert_eq!(
            header(&response, "retry-after"),
            None,
            "only a 429 says when"
        );
    }

    #[test]
    fn refusals_alone_are_the_client_s_400_and_say_nothing_of_limits() {
        let (a, b) = models();
        let refused = [
            Note::refused(&a, Feature::Tools),
            Note::refused(&b, Feature::Tools),
        ];
        let error = exhausted_error("a", &refused);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "unsupported_by_every_candidate");
        // One refusal beside one limited candidate: the limit decides.
        let mixed = [
            Note::refused(&a, Feature::Tools),
            Note::skipped(&b, &cooling(5_000)),
        ];
        assert_eq!(
            exhausted_error("a", &mixed).status,
            StatusCode::TOO_MANY_REQUESTS
        );
        let busy = Refusal::TooLarge {
            vram_mb: 30_000,
            capacity_mb: 24_000,
        };
        let response = with_route(
            json_ok(),
            "b",
            &[Note::busy(&a, &busy), Note::refused(&a, Feature::Tools)],
        );
        assert_eq!(header(&response, PROVIDER_HEADER), Some("b"));
        assert_eq!(header(&response, ATTEMPTS_HEADER), Some("1"));
        assert_eq!(header(&response, SKIPPED_HEADER), Some("a:gpu, a:tools"));
        assert_eq!(
            header(&response, ROUTE_HEADER),
            Some("a=skipped(gpu), a=skipped(tools), b=served")
        );
    }

    #[test]
    fn a_tier_or_budget_skip_that_left_nothing_is_a_402_naming_each_candidate() {
        use crate::config::Tier;
        let (a, b) = models();
        let full = Denial::Full {
            scope: "key:alice/spend".into(),
            window: "credit_usd",
            metric: crate::ledger::window::Metric::Credit,
            needed: 10,
            full: crate::ledger::window::Full {
                used: 5_000_000,
                limit: 5_000_000,
                frees_at: None,
            },
            now: 0,
        };
        let notes = [
            Note::failed(
                &a,
                "rate limited (HTTP 429)".into(),
                FailureKind::RateLimited,
            ),
            Note::budget(&b, "alice", &full),
        ];
        let response = exhausted("a", &notes, 0);
        assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            header(&response, ROUTE_HEADER),
            Some("a=failed(rate_limited), b=skipped(budget)")
        );
        let error = exhausted_error("a", &notes);
        assert!(
            error.message.contains("$5.00 of its $5.00 monthly budget"),
            "{}",
            error.message
        );
        let tier = [Note::tier(&b, &[Tier::Local])];
        let error = exhausted_error("a", &tier);
        assert_eq!(error.status, StatusCode::PAYMENT_REQUIRED);
        assert!(
            error.message.contains(
                "b (p): skipped: its tier `free` is not among this request's tiers (local)"
            ),
            "{}",
            error.message
        );
    }

    fn json_ok() -> Response<Body> {
        crate::api::json_response(StatusCode::OK, "{}")
    }
}
