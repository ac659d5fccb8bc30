//! `tollgate plugin test`: recorded cases, one JSON file each in the
//! plugin's `tests/` folder, run through the plugin the way the gateway
//! calls it.
//!
//! An adapter case holds the client's `request`, the `upstream_request` the
//! plugin must make (with the key placed by the gateway's own code), the
//! `upstream_response` (a JSON body, text, or server-sent `events`), and
//! what must come of it: the `client_response` (a body, or a stream's
//! `chunks`), the `failure` an error status is classified as, or the
//! `error` the plugin refuses with. A stream is fed twice, as recorded and
//! one byte at a time, and must translate the same both ways: the network
//! splits events wherever it likes.
//!
//! A policy case holds a `request`, its `candidates` and the `order` they
//! must come out in, and `steps` of failed attempts with the `next` step.
//!
//! Fields a case leaves out are not compared (see `matching`); unknown
//! fields are an error, so a misspelt expectation cannot pass unnoticed.

mod adapter;
mod policy;

use crate::plugins::bindings::{FailureKind, Mode};
use crate::plugins::{Kind, LoadedPlugin, PluginRuntime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One case's result.
pub struct Outcome {
    pub file: PathBuf,
    pub about: String,
    /// Empty when the case passed.
    pub problems: Vec<String>,
}

impl std::fmt::Display for Outcome {
    /// `ok   chat.json: what it checks`, or `FAIL` and each problem below.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.file_name().unwrap_or_default().to_string_lossy();
        let verdict = if self.problems.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        write!(f, "{verdict} {file}: {}", self.about)?;
        for problem in &self.problems {
            write!(f, "\n       {problem}")?;
        }
        Ok(())
    }
}

/// The case files of a folder, in name order.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every case file through `plugin`.
pub async fn run(
    files: &[PathBuf],
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for file in files {
        let (about, problems) = match std::fs::read_to_string(file) {
            Ok(text) => match plugin.kind {
                Kind::Adapter(_) => adapter::run(&text, runtime, plugin).await,
                Kind::Policy(_) => policy::run(&text, runtime, plugin).await,
            },
            Err(e) => (String::new(), vec![format!("cannot read the case: {e}")]),
        };
        outcomes.push(Outcome {
            file: file.clone(),
            about,
            problems,
        });
    }
    outcomes
}

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("the case is not in the format: {e}"))
}

fn chat() -> String {
    "chat".into()
}

const MODES: [(&str, Mode); 6] = [
    ("chat", Mode::Chat),
    ("embedding", Mode::Embedding),
    ("rerank", Mode::Rerank),
    ("transcription", Mode::Transcription),
    ("speech", Mode::Speech),
    ("image", Mode::Image),
];

const FAILURE_KINDS: [(&str, FailureKind); 8] = [
    ("rate-limited", FailureKind::RateLimited),
    ("quota-exhausted", FailureKind::QuotaExhausted),
    ("auth", FailureKind::Auth),
    ("bad-request", FailureKind::BadRequest),
    ("not-found", FailureKind::NotFound),
    ("unavailable", FailureKind::Unavailable),
    ("server", FailureKind::Server),
    ("other", FailureKind::Other),
];

pub(super) fn mode(name: &str) -> Option<Mode> {
    MODES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

/// A WIT mode's name, as the contract spells it.
pub fn mode_name(mode: Mode) -> &'static str {
    MODES
        .iter()
        .find(|(_, m)| *m == mode)
        .map_or("?", |(n, _)| n)
}

pub(super) fn failure_kind(name: &str) -> Option<FailureKind> {
    FAILURE_KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

pub(super) fn failure_kind_name(kind: FailureKind) -> &'static str {
    FAILURE_KINDS
        .iter()
        .find(|(_, k)| *k == kind)
        .map_or("?", |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_maps_both_ways() {
        for (name, m) in MODES {
            assert_eq!(mode(name), Some(m));
            assert_eq!(mode_name(m), name);
        }
        for (name, k) in FAILURE_KINDS {
            assert_eq!(failure_kind(name), Some(k));
            assert_eq!(failure_kind_name(k), name);
        }
    }
}
