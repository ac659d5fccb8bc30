//! What an attempt's outcome means for the counts and cooldowns, whatever
//! the backend keeps them in: a served request is counted with its real
//! usage, a 429 or a spent quota cools the model (or the provider) until
//! the stated reset, and the provider's own rate-limit headers correct the
//! windows they match — or, for a limit no window counts, cool the model
//! when they report it used up.

use super::headers::{RateHeaders, Reported};
use super::plan::{Level, Plan};
use super::window::{Metric, Rule, Span};
use super::{Amounts, Cool, Outcome, Settlement, Sync};
use crate::clock;

/// Decides what an outcome means for the counts, independent of backend.
pub(super) fn settlement(
    plan: &Plan,
    at: u64,
    reserved: Amounts,
    outcome: Outcome,
    headers: &RateHeaders,
) -> Settlement {
    let failed = Amounts {
        requests: reserved.requests,
        ..Amounts::default()
    };
    let actual = match outcome {
        Outcome::Served { usage: None } => reserved,
        Outcome::Served {
            usage: Some((prompt, completion)),
        } => Amounts {
            requests: reserved.requests,
            tokens: prompt.saturating_add(completion),
            credit: plan
                .price
                .as_ref()
                .map_or(0, |p| p.micro_usd(prompt, completion)),
            ..Amounts::default()
        },
        Outcome::NotSent => Amounts::default(),
        Outcome::Failed | Outcome::RateLimited | Outcome::QuotaExhausted => failed,
    };
    let syncs = syncs(plan, headers);
    let cool = match outcome {
        Outcome::RateLimited => Some(rate_limited_cooldown(headers, at)),
        Outcome::QuotaExhausted => Some(exhausted_cooldown(plan, headers, at)),
        _ => reported_exhausted(plan, headers, at),
    };
    Settlement {
        at,
        reserved,
        actual,
        syncs,
        cool,
        success: matches!(outcome, Outcome::Served { .. }),
    }
}

/// A limit the provider reports as used up that no configured window
/// counts: without a window to fill, the next request would be sent and
/// answered 429, so the model cools down until the reported reset instead.
/// A report without a reset is read as OpenAI documents it: a minute
/// window, unless the header names another.
fn reported_exhausted(plan: &Plan, headers: &RateHeaders, now: u64) -> Option<Cool> {
    headers
        .reported
        .iter()
        .filter(|r| r.remaining == 0 && counted_by(plan, r).is_none())
        .map(|r| {
            let wait = r
                .reset_in_ms
                .unwrap_or_else(|| r.span.unwrap_or(Span::Minute).period_ms());
            (r, wait.max(1))
        })
        .max_by_key(|(_, wait)| *wait)
        .map(|(r, wait)| Cool::Until {
            level: Level::Model,
            until: now + wait,
            cause: format!(
                "the provider reported its {} limit{} used up",
                match r.metric {
                    Metric::Requests => "request",
                    Metric::Tokens => "token",
                    Metric::Credit => "credit",
                },
                r.limit.map(|l| format!(" ({l})")).unwrap_or_default()
            ),
        })
}

/// A 429 cools the model until the stated reset, or backs off exponentially.
fn rate_limited_cooldown(headers: &RateHeaders, now: u64) -> Cool {
    let stated = [headers.retry_after_ms, headers.exhausted_until_ms()]
        .into_iter()
        .flatten()
        .max();
    match stated {
        Some(ms) => Cool::Until {
            level: Level::Model,
            until: now + ms.max(1),
            cause: "a 429".into(),
        },
        None => Cool::Backoff {
            level: Level::Model,
            cause: "a 429 without a stated reset".into(),
        },
    }
}

/// A spent credit cools the whole provider until the credit renews; a spent
/// daily quota, the model until the next day (or the stated reset).
fn exhausted_cooldown(plan: &Plan, headers: &RateHeaders, now: u64) -> Cool {
    if let Some(ms) = headers.retry_after_ms.or(headers.exhausted_until_ms()) {
        return Cool::Until {
            level: if plan.has_credit {
                Level::Provider
            } else {
                Level::Model
            },
            until: now + ms.max(1),
            cause: "an exhausted quota".into(),
        };
    }
    if plan.has_credit {
        let start = clock::month_start(now, plan.quota.monthly_reset_day);
        Cool::Until {
            level: Level::Provider,
            until: clock::month_end(start, plan.quota.monthly_reset_day),
            cause: "a spent credit".into(),
        }
    } else {
        Cool::Until {
            level: Level::Model,
            until: clock::day_start(now, plan.quota.daily_offset_ms()) + clock::DAY_MS,
            cause: "an exhausted daily quota".into(),
        }
    }
}

/// Matches each reported limit to a configured window (see [`counted_by`]).
fn syncs(plan: &Plan, headers: &RateHeaders) -> Vec<Sync> {
    let mut out: Vec<Sync> = Vec::new();
    for reported in &headers.reported {
        if let Some((level, index)) = counted_by(plan, reported)
            && !out.iter().any(|s| s.level == level && s.index == index)
        {
            out.push(Sync {
                level,
                index,
                remaining: reported.remaining,
                reset_in_ms: reported.reset_in_ms,
            });
        }
    }
    out
}

/// The configured window a reported limit is about: the one the header
/// names (Cerebras), else one with an equal limit, else the one its reset
/// fits. Model windows are preferred to provider-wide ones.
fn counted_by(plan: &Plan, reported: &Reported) -> Option<(Level, usize)> {
    let matches = |rule: &Rule| -> bool {
        rule.metric == reported.metric
            && match (reported.span, reported.limit, reported.reset_in_ms) {
                (Some(span), _, _) => rule.span == span,
                (None, Some(limit), _) if limit == rule.limit => true,
                (None, _, Some(reset)) => rule.span == Span::for_reset(reset),
                _ => false,
            }
    };
    let by_limit =
        |rule: &Rule| reported.limit == Some(rule.limit) && rule.metric == reported.metric;
    [Level::Model, Level::Provider]
        .into_iter()
        .find_map(|level| {
            let rules = &plan.scope(level).rules;
            rules
                .iter()
                .position(by_limit)
                .or_else(|| rules.iter().position(matches))
                .map(|index| (level, index))
        })
}
