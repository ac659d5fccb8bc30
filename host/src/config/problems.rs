//! Validation: every problem a fragment can have that does not depend on
//! the environment, each a [`Problem`] naming its file and field, so
//! `tollgate check` points at the line to fix and a reload says what it
//! rejected.

use super::fragment::{Limits, LocalBackend, ProviderFile};
use super::resolve::key_reference;
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// Where in the file (`models[1].alias`, `aliases.chat`); `None` when
    /// the file as a whole could not be read or parsed.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn at(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A problem with the file as a whole.
    pub fn file(file: &Path, message: impl ToString) -> Self {
        Problem {
            file: file.to_path_buf(),
            field: None,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, one a line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

/// Problems that do not depend on the environment.
pub(super) fn check_provider(
    file: &ProviderFile,
    adapter_known: &dyn Fn(&str) -> bool,
    problem: &mut dyn FnMut(&str, String),
) {
    if file.name.trim().is_empty() {
        problem("name", "must not be empty".into());
    }
    if file.flag.trim().is_empty() {
        problem("flag", "must not be empty".into());
    }
    if !adapter_known(&file.adapter) {
        problem(
            "adapter",
            format!(
                "no plugin named `{}` is bundled or in the plugins folder",
                file.adapter
            ),
        );
    }
    if let Some(key) = &file.api_key
        && key_reference(key).is_none()
    {
        problem(
            "api_key",
            "must be an environment reference such as ${GROQ_API_KEY}, never a literal key".into(),
        );
    }
    if file
        .adapter_options
        .as_ref()
        .is_some_and(|o| !o.is_object())
    {
        problem("adapter_options", "must be a mapping".into());
    }
    let t = &file.timeouts;
    for (field, seconds) in [
        ("timeouts.connect", t.connect),
        ("timeouts.response", t.response),
        ("timeouts.idle", t.idle),
        ("timeouts.total", t.total),
    ] {
        if let Some(why) = bad_seconds(seconds) {
            problem(field, why);
        }
    }
    if !t.max_mib.is_finite() || t.max_mib <= 0.0 || t.max_mib > MAX_STREAM_MIB {
        problem(
            "timeouts.max_mib",
            format!("must be a number of MiB above 0 and at most {MAX_STREAM_MIB}"),
        );
    }
    if crate::clock::parse_time_of_day(&file.quota.daily_reset).is_none() {
        problem(
            "quota.daily_reset",
            format!(
                "`{}` is not a UTC time such as 00:00",
                file.quota.daily_reset
            ),
        );
    }
    if !(1..=28).contains(&file.quota.monthly_reset_day) {
        problem(
            "quota.monthly_reset_day",
            "must be a day from 1 to 28".into(),
        );
    }
    check_limits(&file.limits, "limits", problem);
    if let Some(local) = &file.local {
        check_local(local, problem);
    }
    if file.limits.credit_usd.is_some()
        && file.price.is_none()
        && file.models.iter().any(|m| m.price.is_none())
    {
        problem(
            "price",
            "a credit_usd limit needs a price for every model (here or per model)".into(),
        );
    }
    if file.models.is_empty() {
        problem("models", "lists no model".into());
    }
    for (i, model) in file.models.iter().enumerate() {
        if model.alias.trim().is_empty() {
            problem(&format!("models[{i}].alias"), "must not be empty".into());
        }
        if model.model.trim().is_empty() {
            problem(&format!("models[{i}].model"), "must not be empty".into());
        }
        check_limits(&model.limits, &format!("models[{i}].limits"), problem);
        if let Some(gpu) = &model.gpu
            && !matches!(gpu.device.as_str(), "cuda" | "cpu")
        {
            problem(
                &format!("models[{i}].gpu.device"),
                format!("`{}` is not `cuda` or `cpu`", gpu.device),
            );
        }
    }
}

fn check_local(local: &LocalBackend, problem: &mut dyn FnMut(&str, String)) {
    if local.concurrency == Some(0) {
        problem("local.concurrency", "must be at least 1".into());
    }
    if local.max_loaded == Some(0) {
        problem("local.max_loaded", "must be at least 1".into());
    }
    for (field, seconds) in [
        ("local.idle_ttl", local.idle_ttl),
        ("local.queue_timeout", local.queue_timeout),
    ] {
        if let Some(why) = bad_seconds(seconds) {
            problem(field, why);
        }
    }
}

/// The longest wait a fragment may name: a week. A larger one is a typo
/// (`1e20` once got through and then panicked where it became a `Duration`).
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// The largest stream cap worth naming (64 GiB): more is a typo.
const MAX_STREAM_MIB: f64 = 65536.0;

/// What is wrong with a number of seconds a fragment gives, if anything.
fn bad_seconds(seconds: f64) -> Option<String> {
    if !seconds.is_finite() || seconds <= 0.0 {
        Some("must be a positive number of seconds".into())
    } else if seconds > MAX_SECONDS {
        Some(format!(
            "{seconds} s is more than a week ({MAX_SECONDS} s): is it a typo?"
        ))
    } else {
        None
    }
}

/// A zero limit would make a model unusable; a negative or absurd credit is a typo.
fn check_limits(limits: &Limits, field: &str, problem: &mut dyn FnMut(&str, String)) {
    let counts = [
        limits.rpm,
        limits.rph,
        limits.rpd,
        limits.tpm,
        limits.tph,
        limits.tpd,
        limits.rpmonth,
        limits.tpmonth,
    ];
    if counts.contains(&Some(0)) {
        problem(
            field,
            "a limit of 0 would never allow a request; remove the model instead".into(),
        );
    }
    if limits
        .credit_usd
        .is_some_and(|c| !c.is_finite() || c <= 0.0)
    {
        problem(
            field,
            "credit_usd must be a positive number of dollars".into(),
        );
    }
}
