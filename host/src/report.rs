//! What `tollgate check` and `tollgate models` print for people.

use crate::config::{Catalog, Limits, Model};
use crate::plugins::{PluginRuntime, PluginSource};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

/// Prints a report; a closed pipe (`tollgate models | head`) is not an error.
pub fn print(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn check(catalog: &Catalog, plugins: &PluginRuntime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plugins:");
    for plugin in plugins.plugins() {
        let _ = writeln!(
            out,
            "  {:<14} {:<8} {:<8} wit {:<6} {}  sha256:{}",
            plugin.name,
            plugin.kind.name(),
            plugin.info.version,
            plugin.wit_version,
            source(&plugin.source),
            &plugin.digest[..12]
        );
    }
    for failure in plugins.failures() {
        let _ = writeln!(
            out,
            "  {:<12} REJECTED {}: {}",
            failure.name,
            source(&failure.source),
            failure.error
        );
    }
    let enabled = catalog.providers.iter().filter(|p| p.enabled()).count();
    let _ = writeln!(
        out,
        "providers ({enabled} of {} enabled):",
        catalog.providers.len()
    );
    for provider in &catalog.providers {
        let models = catalog
            .models
            .iter()
            .filter(|m| Arc::ptr_eq(&m.provider, provider))
            .count();
        let status = match &provider.status {
            Ok(()) => "enabled".to_owned(),
            Err(why) => format!("disabled: {why}"),
        };
        let _ = writeln!(
            out,
            "  {:<14} {:<12} {models:>3} models  flag {:<14} {status}",
            provider.name,
            provider.tier.as_str(),
            provider.flag,
        );
    }
    let _ = writeln!(out, "fallbacks: {} chains", catalog.fallbacks.len());
    out
}

pub fn models(catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:<14} {:<14} {:<13} {:<9} LIMITS",
        "ALIAS", "PROVIDER", "MODE", "TIER", "STATUS"
    );
    for model in &catalog.models {
        let _ = writeln!(
            out,
            "{:<44} {:<14} {:<14} {:<13} {:<9} {}",
            model.alias,
            model.provider.name,
            model.mode.as_str(),
            model.tier.as_str(),
            if model.enabled() {
                "enabled"
            } else {
                "disabled"
            },
            describe(model)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Provider-wide limits and where they are published:");
    for provider in &catalog.providers {
        let limits = limits(&provider.limits);
        let docs = provider.docs.as_deref().unwrap_or("");
        if !limits.is_empty() || !docs.is_empty() {
            let _ = writeln!(out, "  {:<14} {:<36} {docs}", provider.name, limits);
        }
    }
    out
}

fn source(source: &PluginSource) -> String {
    match source {
        PluginSource::Bundled => "bundled".to_owned(),
        PluginSource::File(path) => path.display().to_string(),
    }
}

/// A model's own limits, GPU need, price and notes on one line.
fn describe(model: &Model) -> String {
    let mut parts = vec![limits(&model.limits)];
    if let Some(gpu) = &model.gpu {
        parts.push(format!("{} {} MB", gpu.device, gpu.vram_mb));
    }
    if let Some(price) = &model.price {
        parts.push(format!(
            "${}/${} per Mtok",
            price.input_per_mtok, price.output_per_mtok
        ));
    }
    if let Some(notes) = &model.notes {
        parts.push(format!("({notes})"));
    }
    parts.retain(|p| !p.is_empty());
    parts.join("  ")
}

fn limits(limits: &Limits) -> String {
    let counted = [
        ("rpm", limits.rpm),
        ("rph", limits.rph),
        ("rpd", limits.rpd),
        ("tpm", limits.tpm),
        ("tph", limits.tph),
        ("tpd", limits.tpd),
        ("rpmonth", limits.rpmonth),
        ("tpmonth", limits.tpmonth),
    ];
    let mut parts: Vec<String> = counted
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
        .collect();
    if let Some(credit) = limits.credit_usd {
        parts.push(format!("credit ${credit}"));
    }
    parts.join(", ")
}
