//! Time for the ledger: a clock that tests can move by hand, and the calendar
//! arithmetic behind per-day and per-month windows (UTC, no time-zone data).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECOND_MS: u64 = 1_000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Milliseconds since the Unix epoch. Windows are computed from this alone,
/// so an injected clock drives every reset in tests and simulations.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Start of the day containing `now`, for days that begin `offset_ms` after
/// UTC midnight.
pub fn day_start(now: u64, offset_ms: u64) -> u64 {
    let shifted = now.saturating_sub(offset_ms);
    shifted - shifted % DAY_MS + offset_ms
}

/// Start of the billing month containing `now`, for months that begin on
/// `day` (1–28) at UTC midnight.
pub fn month_start(now: u64, day: u32) -> u64 {
    let (y, m, d) = civil_from_days((now / DAY_MS) as i64);
    let this = month_day_ms(y, m, day);
    if d >= day && now >= this {
        this
    } else {
        let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        month_day_ms(y, m, day)
    }
}

/// The first instant after the billing month that starts at `start`.
pub fn month_end(start: u64, day: u32) -> u64 {
    let (y, m, _) = civil_from_days((start / DAY_MS) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    month_day_ms(y, m, day)
}

fn month_day_ms(y: i64, m: u32, d: u32) -> u64 {
    (days_from_civil(y, m, d).max(0) as u64) * DAY_MS
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-11-25T03:04:05Z`, for admin output.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses a UTC RFC 3339 time (`2026-11-25T03:04:05Z`, fractions allowed)
/// into Unix milliseconds, as Anthropic's rate-limit resets are given.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-');
    let y: i64 = date.next()?.parse().ok()?;
    let m: u32 = date.next()?.parse().ok()?;
    let d: u32 = date.next()?.parse().ok()?;
    let mut time = time.splitn(3, ':');
    let h: u64 = time.next()?.parse().ok()?;
    let min: u64 = time.next()?.parse().ok()?;
    let secs: f64 = time.next()?.parse().ok()?;
    // RFC 3339 years have four digits; a longer one overflowed the day count.
    let valid = (0..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d);
    let valid = valid && h < 24 && min < 60;
    let valid = valid && (0.0..61.0).contains(&secs);
    valid.then(|| {
        month_day_ms(y, m, d) + h * HOUR_MS + min * MINUTE_MS + (secs * 1000.0).round() as u64
    })
}

/// Parses `HH:MM` into milliseconds after midnight.
pub fn parse_time_of_day(text: &str) -> Option<u64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.len() == 5).then_some(h * HOUR_MS + m * MINUTE_MS)
}

#[cfg(test)]
pub(crate) fn utc(y: i64, m: u32, d: u32, h: u64, min: u64) -> u64 {
    month_day_ms(y, m, d) + h * HOUR_MS + min * MINUTE_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for days in [-1_000_i64, 0, 59, 60, 365, 11_016, 20_000, 20_782] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(
            rfc3339(utc(2026, 11, 25, 3, 4) + 5_000),
            "2026-11-25T03:04:05Z"
        );
        assert_eq!(rfc3339(utc(2024, 2, 29, 23, 59)), "2024-02-29T23:59:00Z");
    }

    #[test]
    fn days_start_at_the_configured_time() {
        let now = utc(2026, 11, 25, 3, 0);
        assert_eq!(day_start(now, 0), utc(2026, 11, 25, 0, 0));
        assert_eq!(day_start(now, 7 * HOUR_MS), utc(2026, 11, 24, 7, 0));
        assert_eq!(
            day_start(utc(2026, 11, 25, 7, 0), 7 * HOUR_MS),
            utc(2026, 11, 25, 7, 0)
        );
    }

    #[test]
    fn months_start_on_the_configured_day() {
        let now = utc(2026, 1, 10, 12, 0);
        assert_eq!(month_start(now, 1), utc(2026, 1, 1, 0, 0));
        assert_eq!(month_end(month_start(now, 1), 1), utc(2026, 2, 1, 0, 0));
        assert_eq!(month_start(now, 15), utc(2025, 12, 15, 0, 0));
        assert_eq!(month_end(month_start(now, 15), 15), utc(2026, 1, 15, 0, 0));
        assert_eq!(
            month_start(utc(2026, 12, 31, 23, 59), 1),
            utc(2026, 12, 1, 0, 0)
        );
        assert_eq!(month_end(utc(2026, 12, 1, 0, 0), 1), utc(2027, 1, 1, 0, 0));
    }

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(parse_time_of_day("00:00"), Some(0));
        assert_eq!(
            parse_time_of_day("07:30"),
            Some(7 * HOUR_MS + 30 * MINUTE_MS)
        );
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("7:30"), None);
        assert_eq!(parse_time_of_day("noon"), None);
    }

    #[test]
    fn rfc3339_round_trips() {
        let at = utc(2026, 11, 25, 10, 16) + 7_250;
        assert_eq!(parse_rfc3339("2026-11-25T10:16:07.25Z"), Some(at));
        assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at - 250));
        assert_eq!(parse_rfc3339("2026-11-25T10:16:07+00:00"), Some(at - 250));
        assert_eq!(parse_rfc3339("2026-13-25T10:16:07Z"), None);
        assert_eq!(parse_rfc3339("2026-11-25 10:16:07"), None);
        // Found by the rate_headers fuzz target: a year this long overflowed.
        assert_eq!(parse_rfc3339("9223372036854775807-12-07T10:00:00Z"), None);
        assert_eq!(parse_rfc3339("-5-12-07T10:00:00Z"), None);
    }
}
