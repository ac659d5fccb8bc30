//! Operator endpoints: `/admin/quotas` (the ledger), `/admin/gpu` (the GPU
//! lease table), `/admin/plugins` (what is loaded, from where, and what
//! the last reload rejected) and `/admin/activity` (the dashboard's chart).

use crate::api::{ApiError, Body, json_response};
use crate::clock::rfc3339;
use crate::plugins::PluginSource;
use crate::route::Gateway;
use crate::state::{AppState, Generation};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// The quota ledger.
pub async fn quotas(gateway: &Gateway) -> Response<Body> {
    let report = gateway.ledger.report().await;
    encode(&report)
}

/// The GPU lease table.
pub fn gpu(gateway: &Gateway) -> Response<Body> {
    encode(&gateway.leases.report())
}

/// How many seconds of activity `/admin/activity` gives.
const ACTIVITY_SECONDS: usize = 300;

/// Requests, fallbacks and failures per second over the last minutes, for
/// the dashboard's chart.
pub fn activity() -> Response<Body> {
    use crate::clock::Clock;
    let now_ms = crate::clock::SystemClock.now_ms();
    let seconds = crate::metrics::global()
        .activity
        .last(now_ms / 1000, ACTIVITY_SECONDS);
    encode(&serde_json::json!({ "now": rfc3339(now_ms), "seconds": seconds }))
}

/// One plugin as `/admin/plugins` shows it.
#[derive(Debug, Serialize)]
struct PluginRow {
    name: String,
    kind: &'static str,
    /// The `tollgate:plugin` version it was built against.
    wit_version: Option<String>,
    /// What the plugin says of itself.
    version: Option<String>,
    /// The client protocols an adapter takes as they are (WIT `native`):
    /// `anthropic-messages` for the Anthropic adapter.
    takes_as_is: Vec<String>,
    /// `bundled`, or the file's path.
    source: String,
    digest: Option<String>,
    /// Whether a version of it is in service.
    loaded: bool,
    loaded_at: Option<String>,
    /// Why the newest version of its file was rejected, if it was.
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ConfigStatus {
    loaded_at: String,
    last_reload_at: Option<String>,
    last_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct PluginsReport {
    plugins: Vec<PluginRow>,
    config: ConfigStatus,
}

/// Every plugin in service, and every file the last reload rejected.
pub fn plugins(state: &AppState, generation: &Generation) -> Response<Body> {
    let status = state.reloads.lock().expect("reload status lock").clone();
    let error_of = |name: &str| {
        status
            .plugin_failures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.error.clone())
    };
    let mut rows: Vec<PluginRow> = generation
        .gateway
        .plugins
        .plugins()
        .map(|adapter| PluginRow {
            name: adapter.name.to_string(),
            kind: adapter.kind.name(),
            wit_version: Some(adapter.wit_version.clone()).filter(|v| !v.is_empty()),
            version: Some(adapter.info.version.clone()).filter(|v| !v.is_empty()),
            takes_as_is: adapter
                .native
                .as_ref()
                .map(|n| n.protocols.clone())
                .unwrap_or_default(),
            source: source_name(&adapter.source),
            digest: Some(adapter.digest.clone()),
            loaded: true,
            loaded_at: Some(rfc3339(adapter.loaded_at)),
            last_error: error_of(&adapter.name),
        })
        .collect();
    for failure in &status.plugin_failures {
        if !rows.iter().any(|r| r.name == failure.name) {
            rows.push(PluginRow {
                name: failure.name.clone(),
                kind: "adapter",
                wit_version: None,
                version: None,
                takes_as_is: Vec::new(),
                source: source_name(&failure.source),
                digest: None,
                loaded: false,
                loaded_at: None,
                last_error: Some(failure.error.clone()),
            });
        }
    }
    encode(&PluginsReport {
        plugins: rows,
        config: ConfigStatus {
            loaded_at: rfc3339(status.config_loaded_at),
            last_reload_at: status.last_attempt_at.map(rfc3339),
            last_error: status.config_error,
        },
    })
}

fn source_name(source: &PluginSource) -> String {
    match source {
        PluginSource::Bundled => "bundled".into(),
        PluginSource::File(path) => path.display().to_string(),
    }
}

fn encode(value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "report_failed",
            format!("could not encode the report: {e}"),
        )
        .into_response(),
    }
}
