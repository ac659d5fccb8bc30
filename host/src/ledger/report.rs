//! The ledger as `/admin/quotas` shows it (JSON) and `tollgate quotas`
//! prints it (a table). Keys appear only as fingerprints.

use super::LedgerError;
use super::plan::{Cooldown, Scope};
use super::window::{Metric, Rule};
use crate::clock::rfc3339;
use serde::{Deserialize, Serialize};

/// One window of one scope.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub provider: String,
    /// The provider's model id, or `*` for provider-wide limits.
    pub model: String,
    /// Fingerprint of the API key.
    pub key: String,
    /// `rpm`, `tpd`, `credit_usd`…; empty for a cooldown with no window.
    pub window: String,
    pub metric: Option<Metric>,
    /// Requests, tokens, or dollars for `credit_usd`.
    pub limit: Option<f64>,
    pub used: Option<f64>,
    pub remaining: Option<f64>,
    pub resets_at: Option<String>,
    pub cooldown_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_cause: Option<String>,
}

impl Row {
    pub fn new(
        scope: &Scope,
        rule: Rule,
        used: u64,
        resets_at: Option<u64>,
        cooldown: Option<&Cooldown>,
    ) -> Self {
        let amount = |n: u64| match rule.metric {
            Metric::Credit => n as f64 / 1e6,
            _ => n as f64,
        };
        // A window that only counts has no limit to show.
        let counted = rule.limit < super::window::UNLIMITED;
        Row {
            provider: scope.provider.clone(),
            model: scope.model.clone().unwrap_or_else(|| "*".into()),
            key: scope.key.clone(),
            window: rule.name.into(),
            metric: Some(rule.metric),
            limit: counted.then(|| amount(rule.limit)),
            used: Some(amount(used)),
            remaining: counted.then(|| amount(rule.limit.saturating_sub(used))),
            resets_at: resets_at.map(rfc3339),
            cooldown_until: cooldown.map(|c| rfc3339(c.until)),
            cooldown_cause: cooldown.map(|c| c.cause.clone()),
        }
    }

    pub fn cooldown_only(scope: &Scope, cooldown: &Cooldown) -> Self {
        Row {
            provider: scope.provider.clone(),
            model: scope.model.clone().unwrap_or_else(|| "*".into()),
            key: scope.key.clone(),
            window: String::new(),
            metric: None,
            limit: None,
            used: None,
            remaining: None,
            resets_at: None,
            cooldown_until: Some(rfc3339(cooldown.until)),
            cooldown_cause: Some(cooldown.cause.clone()),
        }
    }
}

/// The whole ledger at one instant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuotaReport {
    /// `embedded`, `redis` or `memory`.
    pub backend: String,
    pub now: String,
    pub quotas: Vec<Row>,
    /// Set when the backend could not be read (Redis down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl QuotaReport {
    pub fn new(backend: &str, now: u64, rows: Result<Vec<Row>, LedgerError>) -> Self {
        let (quotas, error) = match rows {
            Ok(rows) => (rows, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        QuotaReport {
            backend: backend.into(),
            now: rfc3339(now),
            quotas,
            error,
        }
    }

    /// A fixed-width table, one window a line.
    pub fn table(&self) -> String {
        let mut lines = vec![
            [
                "PROVIDER",
                "MODEL",
                "KEY",
                "WINDOW",
                "USED",
                "LIMIT",
                "REMAINING",
                "RESETS AT",
                "COOLDOWN UNTIL",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for row in &self.quotas {
            let number = |n: Option<f64>| match (n, row.metric) {
                (Some(n), Some(Metric::Credit)) => format!("${n:.4}"),
                (Some(n), _) => format!("{n}"),
                (None, _) => "-".into(),
            };
            lines.push(vec![
                row.provider.clone(),
                row.model.clone(),
                row.key.clone(),
                if row.window.is_empty() {
                    "-".into()
                } else {
                    row.window.clone()
                },
                number(row.used),
                number(row.limit),
                number(row.remaining),
                row.resets_at.clone().unwrap_or_else(|| "-".into()),
                match (&row.cooldown_until, &row.cooldown_cause) {
                    (Some(until), Some(cause)) => format!("{until} ({cause})"),
                    (Some(until), None) => until.clone(),
                    _ => "-".into(),
                },
            ]);
        }
        let widths: Vec<usize> = (0..lines[0].len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!("ledger: {} at {}\n", self.backend, self.now);
        if let Some(error) = &self.error {
            out.push_str(&format!("error: {error}\n"));
        }
        for line in &lines {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        if self.quotas.is_empty() {
            out.push_str("(no limits are configured for the enabled providers)\n");
        }
        out
    }
}
