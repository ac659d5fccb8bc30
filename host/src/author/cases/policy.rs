//! Policy cases: a request and its candidates, the order they must come out
//! in, and the step after each failed attempt.

use super::{chat, failure_kind, mode, parse};
use crate::author::matching::compare;
use crate::plugins::bindings::policy::{
    Candidate, FailedAttempt, GpuLease, Headroom, NextStep, RequestShape, Tier,
};
use crate::plugins::{LoadedPlugin, PluginRuntime};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyCase {
    #[serde(default)]
    about: String,
    #[serde(default)]
    request: ShapeSpec,
    #[serde(default)]
    candidates: Vec<CandidateSpec>,
    /// The aliases in the order the policy must give.
    order: Option<Vec<String>>,
    #[serde(default)]
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ShapeSpec {
    mode: String,
    alias: String,
    estimated_tokens: u64,
    stream: bool,
}

impl Default for ShapeSpec {
    fn default() -> Self {
        ShapeSpec {
            mode: chat(),
            alias: "chat".into(),
            estimated_tokens: 0,
            stream: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidateSpec {
    alias: String,
    #[serde(default = "test_provider")]
    provider: String,
    #[serde(default = "free")]
    tier: String,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    headroom: Vec<HeadroomSpec>,
    #[serde(default)]
    cooldown_ms: u64,
    #[serde(default)]
    error_rate: f32,
    #[serde(default)]
    latency_ms: u32,
    gpu: Option<GpuSpec>,
}

fn test_provider() -> String {
    "test".into()
}

fn free() -> String {
    "free".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadroomSpec {
    window: String,
    limit: u64,
    remaining: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuSpec {
    vram_mb: u64,
    #[serde(default)]
    resident: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    failed: FailedSpec,
    #[serde(default = "one")]
    attempts_left: u32,
    /// `"go-on"`, `"stop"` or `{"wait": ms}`.
    next: Value,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailedSpec {
    alias: String,
    kind: String,
    status: Option<u16>,
}

pub(super) async fn run(
    text: &str,
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
) -> (String, Vec<String>) {
    let case: PolicyCase = match parse(text) {
        Ok(case) => case,
        Err(e) => return (String::new(), vec![e]),
    };
    let mut problems = Vec::new();
    if let Err(e) = run_policy_case(&case, runtime, plugin, &mut problems).await {
        problems.push(e);
    }
    (case.about, problems)
}

async fn run_policy_case(
    case: &PolicyCase,
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let shape = RequestShape {
        mode: mode(&case.request.mode)
            .ok_or_else(|| format!("unknown mode `{}`", case.request.mode))?,
        alias: case.request.alias.clone(),
        estimated_tokens: case.request.estimated_tokens,
        stream: case.request.stream,
    };
    if let Some(expected) = &case.order {
        let candidates = case
            .candidates
            .iter()
            .map(candidate)
            .collect::<Result<Vec<_>, _>>()?;
        let order = runtime
            .order(plugin, &shape, &candidates)
            .await
            .map_err(|e| format!("order: {e}"))?;
        let aliases = order
            .iter()
            .map(|&i| {
                candidates
                    .get(i as usize)
                    .map(|c| c.alias.clone())
                    .ok_or_else(|| {
                        format!(
                            "order gave index {i}; there are {} candidates",
                            candidates.len()
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if &aliases != expected {
            problems.push(format!("order: expected {expected:?}, got {aliases:?}"));
        }
    }
    for (i, step) in case.steps.iter().enumerate() {
        let failed = FailedAttempt {
            alias: step.failed.alias.clone(),
            kind: failure_kind(&step.failed.kind)
                .ok_or_else(|| format!("unknown failure kind `{}`", step.failed.kind))?,
            status: step.failed.status,
        };
        let next = runtime
            .after_failure(plugin, &shape, &failed, step.attempts_left)
            .await
            .map_err(|e| format!("after-failure: {e}"))?;
        let got = match next {
            NextStep::GoOn => json!("go-on"),
            NextStep::Stop => json!("stop"),
            NextStep::Wait(ms) => json!({"wait": ms}),
        };
        compare(&step.next, &got, &format!("steps[{i}].next"), problems);
    }
    Ok(())
}

fn candidate(spec: &CandidateSpec) -> Result<Candidate, String> {
    let tier = match spec.tier.as_str() {
        "free" => Tier::Free,
        "subscription" => Tier::Subscription,
        "paid" => Tier::Paid,
        "local" => Tier::Local,
        other => {
            return Err(format!(
                "unknown tier `{other}`: free, subscription, paid or local"
            ));
        }
    };
    Ok(Candidate {
        alias: spec.alias.clone(),
        provider: spec.provider.clone(),
        tier,
        local: spec.local,
        headroom: spec
            .headroom
            .iter()
            .map(|h| Headroom {
                window: h.window.clone(),
                limit: h.limit,
                remaining: h.remaining,
            })
            .collect(),
        cooldown_ms: spec.cooldown_ms,
        error_rate: spec.error_rate,
        latency_ms: spec.latency_ms,
        gpu: spec.gpu.as_ref().map(|g| GpuLease {
            vram_mb: g.vram_mb,
            resident: g.resident,
        }),
    })
}
