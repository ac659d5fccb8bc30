//! What the gateway counts for Prometheus (`/metrics`) and the dashboard.
//!
//! The counters live for the process, not for a generation: a reload
//! replaces the catalogue and plugins, and a counter that went back to zero
//! with it would read as a crash to Prometheus. They are written from every
//! stage of a request (the router, the GPU table, the plugin sandbox, the
//! reloader), so this module sits below all of them and imports none.
//!
//! Every label value is a name from the configuration (an alias, a provider,
//! a plugin) or one of a fixed set of words, never anything a client sent,
//! so the number of series stays bounded by the catalogue.
//!
//! Gauges of state the ledger and the GPU table already keep (headroom,
//! cooldowns, VRAM) are not copied here: `/metrics` reads them at scrape
//! time (`http::metrics`).

pub mod activity;
pub mod meters;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write;
use std::sync::{Arc, LazyLock};

/// Bucket bounds for request and first-token times, in seconds: from a
/// local model's few milliseconds to a long generation's two minutes.
const SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Bucket bounds for waits on the GPU: most are none, a model load is tens
/// of seconds.
const WAIT_SECONDS: [f64; 10] = [0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS)
}

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_SECONDS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The alias asked for; empty when the request named none the gateway
    /// serves (its name is the client's, not the configuration's).
    pub model: Arc<str>,
    /// The alias that answered; empty when none did.
    pub served_by: Arc<str>,
    pub outcome: Outcome,
}

/// How a request ended, as `tollgate_requests_total` counts it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in full.
    Ok,
    /// A stream the provider broke off after it started.
    Interrupted,
    /// A stream the client closed before its end.
    Cancelled,
    /// Every candidate was rate limited or out of quota (429).
    RateLimited,
    /// Refused as the client's error (4xx), before or by a provider.
    ClientError,
    /// Every candidate failed (5xx).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Interrupted => "interrupted",
            Outcome::Cancelled => "cancelled",
            Outcome::RateLimited => "rate_limited",
            Outcome::ClientError => "client_error",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome a finished (or unstarted) answer's status says.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=399 => Outcome::Ok,
            429 => Outcome::RateLimited,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Failed,
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabel {
    pub served_by: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub from: Arc<str>,
    pub to: Arc<str>,
    /// The window that was full (`rpm`, `tpd`…), `cooldown`, `gpu`, a
    /// refused field, or the failure's kind (`rate_limited`, `server`…).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub served_by: Arc<str>,
    /// `prompt` or `completion`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: Arc<str>,
    /// `ok`, `trap`, `deadline` or `instantiate`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok`; `plugin_rejected` when the new generation went into service
    /// without a plugin file that did not load (its old version kept);
    /// `rejected` when the configuration did not load and the old
    /// generation stayed in service.
    pub outcome: &'static str,
}

/// The process's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histograms<ModelLabel>,
    pub first_token: Histograms<ServedLabel>,
    pub fallbacks: Family<FallbackLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub plugin_calls: Family<PluginLabels, Counter>,
    pub gpu_wait: Histograms<BackendLabel>,
    pub reloads: Family<ReloadLabel, Counter>,
    /// Requests and fallbacks per second, for the dashboard's chart.
    pub activity: activity::Activity,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let reloads = Family::default();
    // Each outcome is shown from the start, at zero, so that a first
    // rejected reload is an increase Prometheus can see.
    for outcome in ["ok", "plugin_rejected", "rejected"] {
        drop(reloads.get_or_create(&ReloadLabel { outcome }));
    }
    Metrics {
        requests: Family::default(),
        duration: Family::new_with_constructor(seconds_histogram),
        first_token: Family::new_with_constructor(seconds_histogram),
        fallbacks: Family::default(),
        tokens: Family::default(),
        plugin_calls: Family::default(),
        gpu_wait: Family::new_with_constructor(wait_histogram),
        reloads,
        activity: activity::Activity::default(),
    }
});

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Adds these metrics to `registry` (one made for a scrape, with the
    /// `tollgate` prefix); the families are shared, not copied.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests answered, by the alias asked for, the alias that served and how it ended",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's arrival to the end of its answer (a stream's last event)",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register_with_unit(
            "first_token",
            "Time from a streamed request's arrival to its first event",
            Unit::Seconds,
            self.first_token.clone(),
        );
        registry.register(
            "fallbacks",
            "Moves from one candidate to the next, by why the first did not serve",
            self.fallbacks.clone(),
        );
        registry.register(
            "tokens",
            "Tokens the providers reported, by the alias that served and direction",
            self.tokens.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into plugins, by plugin and outcome",
            self.plugin_calls.clone(),
        );
        registry.register_with_unit(
            "gpu_wait",
            "Time a request waited for a local backend's job slot and GPU memory",
            Unit::Seconds,
            self.gpu_wait.clone(),
        );
        registry.register(
            "reloads",
            "Configuration and plugin reloads, by outcome",
            self.reloads.clone(),
        );
    }

    /// Counts one call into `plugin` that failed.
    pub fn plugin_fault(&self, plugin: &Arc<str>, outcome: &'static str) {
        self.plugin_calls
            .get_or_create(&PluginLabels {
                plugin: plugin.clone(),
                outcome,
            })
            .inc();
    }

    /// The counter of `plugin`'s successful calls, for the plugin to keep.
    pub fn plugin_ok(&self, plugin: &Arc<str>) -> Counter {
        self.plugin_calls.get_or_create_owned(&PluginLabels {
            plugin: plugin.clone(),
            outcome: "ok",
        })
    }

    /// Counts one reload: `ok`, `plugin_rejected` or `rejected`.
    pub fn reloaded(&self, outcome: &'static str) {
        self.reloads.get_or_create(&ReloadLabel { outcome }).inc();
    }
}
