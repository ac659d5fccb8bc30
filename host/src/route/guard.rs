//! The caller's fence around a request: what its gateway key allows (the
//! model asked for, its own rates) before any candidate is considered, and
//! per candidate the tiers the request may use and the key's budget.
//!
//! A request without a key (the master key, an open gateway) passes every
//! check but the tiers an `x-tollgate-tiers` header names.

use super::notes::{Note, set_header};
use super::record::Record;
use crate::api::{ApiError, Body};
use crate::config::{Model, Tier};
use crate::keys::{Caller, GatewayKey};
use crate::ledger::estimate::Estimate;
use crate::ledger::window::Metric;
use crate::ledger::{Denial, Ledger, Reservation};
use hyper::{Response, StatusCode};
use std::sync::Arc;

/// Admits a request for `alias` on its key: 403 outside the key's models,
/// 429 over one of its rates. The rates reservation is kept in the record.
pub(super) async fn admit(
    ledger: &Arc<Ledger>,
    caller: &Caller,
    alias: &str,
    estimate: &Estimate,
    record: &Record,
) -> Result<(), Response<Body>> {
    let Some(key) = &caller.key else {
        return Ok(());
    };
    if !key.spec.allows(alias) {
        return Err(not_allowed(key, alias).into_response());
    }
    match ledger.reserve(&key.plans.rates, estimate).await {
        Ok(reservation) => {
            record.hold_key(reservation);
            Ok(())
        }
        Err(denial) => Err(over_rate(key, &denial)),
    }
}

/// Whether the caller may be served from the candidate's tier.
pub(super) fn tier(caller: Option<&Caller>, model: &Arc<Model>) -> Result<(), Note> {
    match caller {
        Some(caller) if !caller.tier_allowed(model.tier) => {
            Err(Note::tier(model, caller.tiers.as_deref().unwrap_or(&[])))
        }
        _ => Ok(()),
    }
}

/// For a paid candidate of a keyed request, reserves the attempt's price
/// on the key's budget (a key without one counts its spend all the same).
pub(super) async fn budget(
    ledger: &Arc<Ledger>,
    caller: Option<&Caller>,
    model: &Arc<Model>,
    estimate: &Estimate,
) -> Result<Option<Reservation>, Note> {
    let key = caller.and_then(|c| c.key.as_ref());
    let Some(key) = key.filter(|_| model.tier == Tier::Paid) else {
        return Ok(None);
    };
    let plan = key.plans.spend_plan(key.name(), model.price.as_ref());
    match ledger.reserve(&plan, estimate).await {
        Ok(reservation) => Ok(Some(reservation)),
        Err(denial) => Err(Note::budget(model, key.name(), &denial)),
    }
}

fn not_allowed(key: &GatewayKey, alias: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_error",
        "model_not_allowed",
        format!(
            "the key `{}` may not use the model `{alias}` (it may use: {})",
            key.name(),
            key.spec.models.join(", ")
        ),
    )
}

/// 429 for a key over one of its own limits, with `retry-after` and the
/// `x-ratelimit-*` headers of the window that is full, as OpenAI names them.
fn over_rate(key: &GatewayKey, denial: &Denial) -> Response<Body> {
    let Denial::Full {
        window,
        metric,
        full,
        now,
        ..
    } = denial
    else {
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "key_rate_limit_exceeded",
            format!("the key `{}` is cooling down", key.name()),
        );
        return error.into_response();
    };
    let unit = match metric {
        Metric::Tokens => "tokens",
        _ => "requests",
    };
    let wait_ms = full.frees_at.map(|at| at.saturating_sub(*now));
    let message = match wait_ms {
        Some(ms) => format!(
            "the key `{}` has used its {window} limit ({} of {} {unit}); room again in {:.1}s",
            key.name(),
            full.used,
            full.limit,
            ms as f64 / 1000.0
        ),
        None => format!(
            "this request needs more than the key `{}`'s {window} limit of {} {unit}",
            key.name(),
            full.limit
        ),
    };
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "key_rate_limit_exceeded",
        message,
    )
    .into_response();
    let remaining = full.limit.saturating_sub(full.used);
    set_header(
        &mut response,
        &format!("x-ratelimit-limit-{unit}"),
        &full.limit.to_string(),
    );
    set_header(
        &mut response,
        &format!("x-ratelimit-remaining-{unit}"),
        &remaining.to_string(),
    );
    if let Some(ms) = wait_ms {
        let seconds = ms.div_ceil(1000).max(1);
        set_header(
            &mut response,
            &format!("x-ratelimit-reset-{unit}"),
            &format!("{seconds}s"),
        );
        set_header(&mut response, "retry-after", &seconds.to_string());
    }
    set_header(&mut response, "x-tollgate-key-limit", window);
    response
}
