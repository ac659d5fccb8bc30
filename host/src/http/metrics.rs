//! `GET /metrics`, in Prometheus's text format: the process's counters
//! ([`crate::metrics`]) and, read at scrape time from the generation in
//! service, gauges of what the ledger and the GPU table already keep: each
//! provider's headroom in every window, its cooldowns, the card's memory
//! and its leases. Reading them at scrape time keeps them off the request
//! path and never stale.

use crate::api::{ApiError, Body, typed_response};
use crate::clock::parse_rfc3339;
use crate::gpu::GpuReport;
use crate::ledger::keyed::KEY_SCOPE_PREFIX;
use crate::ledger::report::QuotaReport;
use crate::state::AppState;
use hyper::{Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    provider: String,
    /// The provider's model id, or `*` for a provider-wide limit.
    model: String,
    /// `rpm`, `rpd`, `tpm`, `tpd`, `monthly`, `credit_usd`…
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabel {
    key: String,
}

/// The whole exposition.
pub async fn metrics(state: &AppState) -> Response<Body> {
    let generation = state.current();
    let gateway = &generation.gateway;
    let mut registry = Registry::with_prefix("tollgate");
    crate::metrics::global().register(&mut registry);
    let quotas = gateway.ledger.report().await;
    register_quotas(&mut registry, &quotas, gateway.ledger.now());
    register_spend(&mut registry, &quotas);
    let keys = gateway
        .ledger
        .report_of(|scope| scope.provider.starts_with(KEY_SCOPE_PREFIX))
        .await;
    register_keys(&mut registry, &keys);
    register_gpu(&mut registry, &gateway.leases.report());
    register_open(&mut registry, gateway);
    let mut text = String::new();
    if let Err(e) = prometheus_text::encode(&mut text, &registry) {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "metrics_failed",
            format!("could not encode the metrics: {e}"),
        )
        .into_response();
    }
    typed_response(StatusCode::OK, prometheus_text::CONTENT_TYPE, text)
}

/// `tollgate_quota_limit` and `tollgate_quota_remaining` for every window
/// of every scope, and `tollgate_cooldown_seconds` for every scope cooling
/// down (0 once it is over, so a graph falls back rather than stopping).
fn register_quotas(registry: &mut Registry, report: &QuotaReport, now_ms: u64) {
    let limit = Family::<QuotaLabels, FloatGauge>::default();
    let remaining = Family::<QuotaLabels, FloatGauge>::default();
    let cooldown = Family::<ScopeLabels, FloatGauge>::default();
    for row in &report.quotas {
        let scope = ScopeLabels {
            provider: row.provider.clone(),
            model: row.model.clone(),
        };
        if let Some(until) = row.cooldown_until.as_deref().and_then(parse_rfc3339) {
            let seconds = until.saturating_sub(now_ms) as f64 / 1000.0;
            cooldown.get_or_create(&scope).set(seconds);
        }
        let (Some(max), Some(left)) = (row.limit, row.remaining) else {
            continue;
        };
        let labels = QuotaLabels {
            provider: scope.provider,
            model: scope.model,
            window: row.window.clone(),
        };
        limit.get_or_create(&labels).set(max);
        remaining.get_or_create(&labels).set(left);
    }
    registry.register(
        "quota_limit",
        "A window's limit (requests, tokens, or dollars for credit_usd)",
        limit,
    );
    registry.register(
        "quota_remaining",
        "What is left of a window until it resets",
        remaining,
    );
    registry.register_with_unit(
        "cooldown",
        "Time until a scope cooling down after a 429 may be tried again",
        Unit::Seconds,
        cooldown,
    );
}

/// `tollgate_spend_usd{provider,model}`: this month's spend on each priced
/// model, from its price and the usage its provider reported.
fn register_spend(registry: &mut Registry, report: &QuotaReport) {
    let spend = Family::<ScopeLabels, FloatGauge>::default();
    for row in report.quotas.iter().filter(|r| r.window == "spend_usd") {
        let labels = ScopeLabels {
            provider: row.provider.clone(),
            model: row.model.clone(),
        };
        spend.get_or_create(&labels).set(row.used.unwrap_or(0.0));
    }
    registry.register(
        "spend_usd",
        "Dollars spent this calendar month on a priced model",
        spend,
    );
}

/// Each gateway key's month: `tollgate_key_requests`, `tollgate_key_tokens`
/// and `tollgate_key_spend_usd`, labelled with the key's name (never its
/// secret).
fn register_keys(registry: &mut Registry, report: &QuotaReport) {
    let families = [
        (
            "key_requests",
            "rpmonth",
            "Requests a gateway key made this calendar month",
        ),
        (
            "key_tokens",
            "tpmonth",
            "Tokens a gateway key's answers used this calendar month",
        ),
        (
            "key_spend_usd",
            "credit_usd",
            "Dollars a gateway key spent on paid models this calendar month",
        ),
    ];
    for (name, window, help) in families {
        let family = Family::<KeyLabel, FloatGauge>::default();
        for row in report.quotas.iter().filter(|r| r.window == window) {
            let key = row.provider.trim_start_matches(KEY_SCOPE_PREFIX).to_owned();
            family
                .get_or_create(&KeyLabel { key })
                .set(row.used.unwrap_or(0.0));
        }
        registry.register(name, help, family);
    }
}

/// What is open now: connections, requests in flight, plugin instance
/// slots taken, and tasks on the serving lanes. All fall back to their idle
/// level once traffic stops; one that does not is a leak.
fn register_open(registry: &mut Registry, gateway: &crate::route::Gateway) {
    use crate::gauge::{CONNECTIONS, IN_FLIGHT};
    let gauges = [
        (
            "connections_open",
            "Client connections open",
            CONNECTIONS.now(),
        ),
        (
            "requests_in_flight",
            "Requests being served, streams until their end",
            IN_FLIGHT.now(),
        ),
        (
            "plugin_slots_in_use",
            "Plugin instance slots taken by calls and open streams",
            gateway.plugins.slots_in_use(),
        ),
        (
            "lane_tasks",
            "Tasks alive on the serving lanes",
            crate::lanes::tasks(),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(value as i64);
        registry.register(name, help, gauge);
    }
}

/// `tollgate_gpu_vram_bytes{state}` (`capacity`, `leased`, and the card's
/// `total`, `used`, `free` where NVML reads them) and `tollgate_gpu_leases`
/// by state, with `waiting` for the requests in line.
fn register_gpu(registry: &mut Registry, report: &GpuReport) {
    const MB: f64 = 1024.0 * 1024.0;
    let vram = Family::<StateLabel, FloatGauge>::default();
    let set = |state: &str, mb: Option<u64>| {
        if let Some(mb) = mb {
            vram.get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(mb as f64 * MB);
        }
    };
    set("capacity", report.capacity_mb);
    set("leased", Some(report.leased_mb));
    set("total", report.device.total_mb);
    set("used", report.device.used_mb);
    set("free", report.device.free_mb);
    let leases = Family::<StateLabel, FloatGauge>::default();
    for state in ["in use", "idle", "unloading"] {
        let count = report.leases.iter().filter(|l| l.state == state).count();
        leases
            .get_or_create(&StateLabel {
                state: state.replace(' ', "_"),
            })
            .set(count as f64);
    }
    leases
        .get_or_create(&StateLabel {
            state: "waiting".into(),
        })
        .set(report.queue.len() as f64);
    registry.register_with_unit(
        "gpu_vram",
        "GPU memory: what leases may hold (capacity), hold (leased), and the card's own readings",
        Unit::Bytes,
        vram,
    );
    registry.register(
        "gpu_leases",
        "Local backends holding GPU memory, by state, and requests waiting for it",
        leases,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::report::Row;

    fn row(
        window: &str,
        limit: Option<f64>,
        remaining: Option<f64>,
        cooldown: Option<&str>,
    ) -> Row {
        Row {
            provider: "groq".into(),
            model: "llama".into(),
            key: "ab12".into(),
            window: window.into(),
            metric: None,
            limit,
            used: None,
            remaining,
            resets_at: None,
            cooldown_until: cooldown.map(str::to_owned),
            cooldown_cause: None,
        }
    }

    #[test]
    fn every_window_is_a_pair_of_gauges_and_a_cooldown_counts_down() {
        let report = QuotaReport {
            backend: "memory".into(),
            now: "2026-12-06T00:00:00Z".into(),
            quotas: vec![
                row(
                    "rpd",
                    Some(1000.0),
                    Some(250.0),
                    Some("2026-12-06T00:00:30Z"),
                ),
                row("", None, None, Some("2026-12-06T00:00:30Z")),
            ],
            error: None,
        };
        let now = parse_rfc3339("2026-12-06T00:00:10Z").unwrap();
        let mut registry = Registry::with_prefix("tollgate");
        register_quotas(&mut registry, &report, now);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        let labels = r#"{provider="groq",model="llama",window="rpd"}"#;
        assert!(
            text.contains(&format!("tollgate_quota_limit{labels} 1000")),
            "{text}"
        );
        assert!(
            text.contains(&format!("tollgate_quota_remaining{labels} 250")),
            "{text}"
        );
        assert!(
            text.contains(r#"tollgate_cooldown_seconds{provider="groq",model="llama"} 20"#),
            "{text}"
        );
        assert!(
            !text.contains("ab12"),
            "the key's fingerprint is not a label"
        );
    }
}
