//! What providers say about their own limits, in response headers.
//!
//! Three dialects are understood:
//! - OpenAI and Groq: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`,
//!   resets as Go durations (`2m59.56s`, `20ms`);
//! - Cerebras: the same with a window suffix (`-requests-day`,
//!   `-tokens-minute`), resets in seconds;
//! - OpenRouter: `x-ratelimit-{limit,remaining,reset}` (requests), the reset
//!   as a Unix timestamp in milliseconds;
//! - Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`,
//!   resets as RFC 3339 times (the input/output token split is not read: the
//!   ledger counts tokens as one total);
//!
//! plus `retry-after` (seconds) and `retry-after-ms`.

use super::window::{Metric, Span};

impl Span {
    fn from_suffix(suffix: &str) -> Option<Span> {
        match suffix {
            "minute" | "min" | "m" => Some(Span::Minute),
            "hour" | "h" => Some(Span::Hour),
            "day" | "d" => Some(Span::Day),
            "month" => Some(Span::Month),
            _ => None,
        }
    }

    /// The span's length, for a report that names no reset.
    pub fn period_ms(self) -> u64 {
        use crate::clock::{DAY_MS, HOUR_MS, MINUTE_MS};
        match self {
            Span::Minute => MINUTE_MS,
            Span::Hour => HOUR_MS,
            Span::Day => DAY_MS,
            Span::Month => 31 * DAY_MS,
        }
    }

    /// The shortest span a reset this far away fits in.
    pub fn for_reset(reset_in_ms: u64) -> Span {
        match reset_in_ms {
            0..=60_000 => Span::Minute,
            60_001..=3_600_000 => Span::Hour,
            3_600_001..=86_400_000 => Span::Day,
            _ => Span::Month,
        }
    }
}

/// One limit the provider reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub metric: Metric,
    pub span: Option<Span>,
    pub limit: Option<u64>,
    pub remaining: u64,
    pub reset_in_ms: Option<u64>,
}

/// Everything rate-related in one response's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub reported: Vec<Reported>,
    pub retry_after_ms: Option<u64>,
}

#[derive(Default)]
struct Partial {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_in_ms: Option<u64>,
}

/// The longest wait a provider's header is taken at: a month, the longest
/// window any provider resets. A larger one (`retry-after: 1e30`, a
/// timestamp in the year 3000) is a provider's bug, and taken as it is it
/// would cool the provider down for good, or overflow where it is added.
pub const MAX_WAIT_MS: u64 = 31 * 24 * 3600 * 1000;

fn capped(ms: u64) -> u64 {
    ms.min(MAX_WAIT_MS)
}

/// `retry-after` in ms: seconds (fractions allowed), or an HTTP date as
/// RFC 9110 also allows, counted from `now_ms` (a date already past is 0).
fn retry_after(value: &str, now_ms: u64) -> Option<u64> {
    if let Ok(seconds) = value.parse::<f64>() {
        return Some((seconds.max(0.0) * 1000.0) as u64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at_ms.saturating_sub(now_ms))
}

impl RateHeaders {
    pub fn parse<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>, now_ms: u64) -> Self {
        let mut groups: Vec<(String, Partial)> = Vec::new();
        let mut parsed = RateHeaders::default();
        for (name, value) in headers {
            if !is_rate_header(name) {
                continue;
            }
            let name = name.to_ascii_lowercase();
            let value = value.trim();
            if name == "retry-after-ms" {
                parsed.retry_after_ms = value
                    .parse::<f64>()
                    .ok()
                    .map(|ms| capped(ms.max(0.0) as u64));
                continue;
            }
            if name == "retry-after" {
                parsed.retry_after_ms = parsed
                    .retry_after_ms
                    .or_else(|| retry_after(value, now_ms).map(capped));
                continue;
            }
            let (field, group) = if let Some(rest) = name.strip_prefix("x-ratelimit-") {
                rest.split_once('-').unwrap_or((rest, ""))
            } else if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
                let Some((group @ ("requests" | "tokens"), field)) = rest.rsplit_once('-') else {
                    continue;
                };
                (field, group)
            } else {
                continue;
            };
            let slot = match groups.iter_mut().find(|(g, _)| g == group) {
                Some((_, slot)) => slot,
                None => {
                    groups.push((group.to_owned(), Partial::default()));
                    &mut groups.last_mut().expect("just pushed").1
                }
            };
            match field {
                "limit" => slot.limit = value.parse().ok(),
                "remaining" => {
                    slot.remaining = value.parse::<f64>().ok().map(|n| n.max(0.0) as u64)
                }
                "reset" => slot.reset_in_ms = reset_in_ms(value, now_ms).map(capped),
                _ => {}
            }
        }
        for (group, partial) in groups {
            let (metric, span) = match group.split_once('-') {
                Some((metric, span)) => (metric, Span::from_suffix(span)),
                None => (group.as_str(), None),
            };
            let metric = match metric {
                "requests" | "" => Metric::Requests,
                "tokens" => Metric::Tokens,
                _ => continue,
            };
            if let Some(remaining) = partial.remaining {
                parsed.reported.push(Reported {
                    metric,
                    span,
                    limit: partial.limit,
                    remaining,
                    reset_in_ms: partial.reset_in_ms,
                });
            }
        }
        parsed
    }

    /// How long until every exhausted limit the provider reported resets.
    pub fn exhausted_until_ms(&self) -> Option<u64> {
        self.reported
            .iter()
            .filter(|r| r.remaining == 0)
            .filter_map(|r| r.reset_in_ms)
            .max()
    }
}

/// Whether a header is one this module reads, without allocating: every
/// upstream response's headers pass through here.
fn is_rate_header(name: &str) -> bool {
    let starts = |prefix: &str| {
        name.len() >= prefix.len()
            && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    starts("x-ratelimit-") || starts("anthropic-ratelimit-") || starts("retry-after")
}

/// A reset as a duration (`2m59.56s`, `20ms`, `7.66`), a Unix timestamp in
/// seconds or milliseconds, or an RFC 3339 time, as milliseconds from now.
fn reset_in_ms(value: &str, now_ms: u64) -> Option<u64> {
    if let Some(at) = crate::clock::parse_rfc3339(value) {
        return Some(at.saturating_sub(now_ms));
    }
    if let Ok(number) = value.parse::<f64>() {
        if number > 1e12 {
            return Some((number as u64).saturating_sub(now_ms));
        }
        if number > 1e9 {
            return Some(((number * 1000.0) as u64).saturating_sub(now_ms));
        }
        return Some((number.max(0.0) * 1000.0).round() as u64);
    }
    go_duration_ms(value)
}

/// Parses Go's duration format: `1h2m3.5s`, `250ms`, `6m0s`.
fn go_duration_ms(value: &str) -> Option<u64> {
    let mut total = 0.0;
    let mut rest = value;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> RateHeaders {
        RateHeaders::parse(pairs.iter().copied(), 1_800_000_000_000)
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("2m59.56s"), Some(179_560));
        assert_eq!(go_duration_ms("7.66s"), Some(7_660));
        assert_eq!(go_duration_ms("20ms"), Some(20));
        assert_eq!(go_duration_ms("1h0m0s"), Some(3_600_000));
        assert_eq!(go_duration_ms("soon"), None);
        assert_eq!(go_duration_ms(""), None);
    }

    #[test]
    fn groq_and_openai_headers() {
        let parsed = parse(&[
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-limit-tokens", "6000"),
            ("x-ratelimit-remaining-requests", "14370"),
            ("x-ratelimit-remaining-tokens", "5997"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-reset-tokens", "7.66s"),
            ("retry-after", "2"),
        ]);
        assert_eq!(parsed.retry_after_ms, Some(2_000));
        assert_eq!(
            parsed.reported,
            vec![
                Reported {
                    metric: Metric::Requests,
                    span: None,
                    limit: Some(14_400),
                    remaining: 14_370,
                    reset_in_ms: Some(179_560),
                },
                Reported {
                    metric: Metric::Tokens,
                    span: None,
                    limit: Some(6_000),
                    remaining: 5_997,
                    reset_in_ms: Some(7_660),
                },
            ]
        );
        assert_eq!(parsed.exhausted_until_ms(), None);
    }

    #[test]
    fn cerebras_headers_name_their_window() {
        let parsed = parse(&[
            ("x-ratelimit-limit-requests-day", "14400"),
            ("x-ratelimit-remaining-requests-day", "0"),
            ("x-ratelimit-reset-requests-day", "33011.382867"),
            ("x-ratelimit-limit-tokens-minute", "60000"),
            ("x-ratelimit-remaining-tokens-minute", "59000"),
            ("x-ratelimit-reset-tokens-minute", "11.382867"),
        ]);
        assert_eq!(parsed.reported[0].span, Some(Span::Day));
        assert_eq!(parsed.reported[0].reset_in_ms, Some(33_011_383));
        assert_eq!(parsed.reported[1].metric, Metric::Tokens);
        assert_eq!(parsed.reported[1].span, Some(Span::Minute));
        assert_eq!(parsed.exhausted_until_ms(), Some(33_011_383));
    }

    #[test]
    fn openrouter_headers_reset_at_a_timestamp() {
        let parsed = parse(&[
            ("X-RateLimit-Limit", "50"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1800000060000"),
        ]);
        assert_eq!(parsed.reported[0].metric, Metric::Requests);
        assert_eq!(parsed.reported[0].reset_in_ms, Some(60_000));
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let parsed = parse(&[("retry-after", "3"), ("retry-after-ms", "1250")]);
        assert_eq!(parsed.retry_after_ms, Some(1_250));
    }

    #[test]
    fn absurd_waits_are_taken_as_a_month() {
        let now = 1_790_000_000_000;
        for value in ["1e30", "inf", "99999999999999999999"] {
            let parsed = RateHeaders::parse([("retry-after", value)], now);
            assert_eq!(parsed.retry_after_ms, Some(MAX_WAIT_MS), "{value}");
        }
        let parsed = RateHeaders::parse(
            [
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1e300"),
            ],
            now,
        );
        assert_eq!(parsed.exhausted_until_ms(), Some(MAX_WAIT_MS));
    }

    #[test]
    fn retry_after_may_be_an_http_date() {
        let now = 1_800_000_000_000;
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now + 90_000);
        let date = httpdate::fmt_http_date(at);
        let parsed = RateHeaders::parse([("Retry-After", date.as_str())], now);
        assert_eq!(parsed.retry_after_ms, Some(90_000), "{date}");
        // A date already past: come back now.
        let parsed = RateHeaders::parse([("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], now);
        assert_eq!(parsed.retry_after_ms, Some(0));
        let parsed = RateHeaders::parse([("Retry-After", "soon")], now);
        assert_eq!(parsed.retry_after_ms, None);
    }

    #[test]
    fn anthropic_reports_requests_and_tokens_with_rfc3339_resets() {
        let now = 1_800_000_000_000;
        let reset = crate::clock::rfc3339(now + 42_000);
        let headers = [
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", reset.as_str()),
            ("anthropic-ratelimit-tokens-limit", "40000"),
            ("anthropic-ratelimit-tokens-remaining", "39000"),
            ("anthropic-ratelimit-input-tokens-remaining", "30000"),
            ("anthropic-organization-id", "org"),
        ];
        let parsed = RateHeaders::parse(headers.iter().copied(), now);
        assert_eq!(parsed.reported.len(), 2, "{parsed:?}");
        let requests = &parsed.reported[0];
        assert_eq!(requests.metric, Metric::Requests);
        assert_eq!((requests.limit, requests.remaining), (Some(50), 0));
        assert_eq!(requests.reset_in_ms, Some(42_000));
        assert_eq!(parsed.reported[1].metric, Metric::Tokens);
        assert_eq!(parsed.reported[1].remaining, 39_000);
        assert_eq!(parsed.exhausted_until_ms(), Some(42_000));
    }
}
