//! Reading a LiteLLM proxy config: its `model_list` deployments, the
//! fallbacks wherever LiteLLM lets them be written, and every setting, each
//! either taken up or named in the report. Parsing is lenient on purpose:
//! one odd deployment is reported and skipped, never the reason the whole
//! import fails.

use super::ImportError;
use super::report::Report;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// A value LiteLLM reads either from the environment (`os.environ/NAME`) or
/// as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Env(String),
    Literal(String),
}

impl Setting {
    fn parse(value: &Value) -> Option<Setting> {
        let text = scalar(value)?;
        Some(match text.strip_prefix("os.environ/") {
            Some(name) => Setting::Env(name.trim().to_owned()),
            None => Setting::Literal(text),
        })
    }
}

/// One entry of `model_list`.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Where it stands in the file, for the report (`model_list[3]`).
    pub at: String,
    /// What clients ask for: the alias, or a load-balanced group.
    pub model_name: String,
    /// The `provider/` prefix of `litellm_params.model`, when it has a known one.
    pub provider: Option<String>,
    /// The provider's own model id (the prefix removed).
    pub model: String,
    pub api_base: Option<Setting>,
    pub api_key: Option<Setting>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// `litellm_params.timeout`, seconds.
    pub timeout: Option<f64>,
    /// `model_info.mode` as LiteLLM spells it.
    pub mode: Option<String>,
    /// USD per token, and per image.
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub cost_per_image: Option<f64>,
    /// `litellm_params` the import does not read, for the report.
    pub unused_params: Vec<String>,
}

/// `from` falls back to `to`, in order; `source` says where it was written.
#[derive(Debug, Clone)]
pub struct Fallback {
    pub from: String,
    pub to: Vec<String>,
    pub source: String,
}

/// Everything the import carries over from one LiteLLM config.
#[derive(Debug, Default)]
pub struct Source {
    pub deployments: Vec<Deployment>,
    /// Model-specific fallbacks, in the order LiteLLM would consult them.
    pub fallbacks: Vec<Fallback>,
    /// `default_fallbacks`: for every group that has none of its own.
    pub default_fallbacks: Vec<String>,
    /// `router_settings.routing_strategy`.
    pub routing_strategy: Option<String>,
    /// `request_timeout` / `router_settings.timeout`, seconds.
    pub request_timeout: Option<f64>,
    /// Entries of `model_list` that were read but not usable (counted as seen).
    pub unreadable: usize,
}

/// LiteLLM providers whose prefix the import recognises, including those
/// it cannot map (so `bedrock/...` reads as "provider bedrock", not as a
/// model called `bedrock/...`).
const KNOWN_PREFIXES: &[&str] = &[
    "openai",
    "text-completion-openai",
    "groq",
    "cerebras",
    "openrouter",
    "huggingface",
    "mistral",
    "codestral",
    "cohere",
    "cohere_chat",
    "anthropic",
    "ollama",
    "ollama_chat",
    "hosted_vllm",
    "vllm",
    "lm_studio",
    "llamafile",
    "deepseek",
    "together_ai",
    "fireworks_ai",
    "xai",
    "deepinfra",
    "perplexity",
    "nvidia_nim",
    "sambanova",
    "gemini",
    "azure",
    "azure_ai",
    "azure_text",
    "bedrock",
    "bedrock_converse",
    "sagemaker",
    "vertex_ai",
    "vertex_ai_beta",
    "palm",
    "replicate",
    "watsonx",
    "cloudflare",
    "databricks",
    "ai21",
    "voyage",
    "jina_ai",
    "github",
    "friendliai",
    "nebius",
    "novita",
    "featherless_ai",
    "nscale",
    "lambda_ai",
    "dashscope",
    "moonshot",
    "hyperbolic",
    "triton",
    "predibase",
    "clarifai",
    "baseten",
    "petals",
    "aleph_alpha",
    "nlp_cloud",
    "custom",
    "custom_openai",
    "litellm_proxy",
];

/// Reads `path` (and the files its `include:` names) and, when given, a
/// separate fallbacks JSON, reporting each setting it does not carry over.
pub fn read(
    path: &Path,
    fallbacks: Option<&Path>,
    report: &mut Report,
) -> Result<Source, ImportError> {
    let root = read_yaml(path)?;
    let mut source = Source::default();
    read_file(&root, path, &mut source, report, 0)?;
    if let Some(file) = fallbacks {
        let text = std::fs::read_to_string(file).map_err(|e| ImportError::read(file, e))?;
        let value: Value = serde_yaml::from_str(&text).map_err(|e| ImportError::Parse {
            path: file.to_path_buf(),
            message: e.to_string(),
        })?;
        let label = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        source
            .fallbacks
            .extend(fallback_entries(&value, &label, report));
    }
    Ok(source)
}

fn read_yaml(path: &Path) -> Result<Mapping, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::read(path, e))?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| ImportError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    match value {
        Value::Mapping(map) => Ok(map),
        _ => Err(ImportError::Parse {
            path: path.to_path_buf(),
            message: "the file is not a mapping with a `model_list`".into(),
        }),
    }
}

fn read_file(
    root: &Mapping,
    path: &Path,
    source: &mut Source,
    report: &mut Report,
    depth: usize,
) -> Result<(), ImportError> {
    for (key, value) in root {
        let key = scalar(key).unwrap_or_default();
        match key.as_str() {
            "model_list" => read_model_list(value, source, report),
            "include" => read_includes(value, path, source, report, depth)?,
            "router_settings" => read_router_settings(value, source, report),
            "litellm_settings" => read_litellm_settings(value, source, report),
            "general_settings" => read_general_settings(value, report),
            "environment_variables" => read_environment(value, report),
            other => report.unmapped(other, explain_top_level(other)),
        }
    }
    Ok(())
}

/// `include:` files are read relative to the including file, as LiteLLM does.
fn read_includes(
    value: &Value,
    path: &Path,
    source: &mut Source,
    report: &mut Report,
    depth: usize,
) -> Result<(), ImportError> {
    if depth > 8 {
        report.unmapped(
            "include",
            "includes nest deeper than 8 files; the rest were not read",
        );
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for name in list(value).iter().filter_map(scalar) {
        let included: PathBuf = dir.join(&name);
        let map = read_yaml(&included)?;
        read_file(&map, &included, source, report, depth + 1)?;
    }
    Ok(())
}

fn read_model_list(value: &Value, source: &mut Source, report: &mut Report) {
    let offset = source.deployments.len() + source.unreadable;
    for (i, entry) in list(value).iter().enumerate() {
        let at = format!("model_list[{}]", offset + i);
        match deployment(entry, &at) {
            Ok(d) => source.deployments.push(d),
            Err(why) => {
                source.unreadable += 1;
                report.unmapped(&at, format!("{why}; not imported"));
            }
        }
    }
}

fn deployment(entry: &Value, at: &str) -> Result<Deployment, String> {
    let map = entry.as_mapping().ok_or("not a mapping")?;
    let model_name = map
        .get("model_name")
        .and_then(scalar)
        .filter(|n| !n.trim().is_empty())
        .ok_or("it has no model_name")?;
    let params = map
        .get("litellm_params")
        .and_then(Value::as_mapping)
        .ok_or_else(|| format!("`{model_name}` has no litellm_params"))?;
    let full = params
        .get("model")
        .and_then(scalar)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| format!("`{model_name}` has no litellm_params.model"))?;
    let (provider, model) = split_provider(&full);
    let info = map.get("model_info").and_then(Value::as_mapping);
    let cost = |key: &str| {
        info.and_then(|i| i.get(key))
            .or_else(|| params.get(key))
            .and_then(number)
    };
    let deployment = Deployment {
        at: at.to_owned(),
        model_name: model_name.clone(),
        provider,
        model,
        api_base: params.get("api_base").and_then(Setting::parse),
        api_key: params.get("api_key").and_then(Setting::parse),
        rpm: params
            .get("rpm")
            .and_then(number)
            .map(|n| n.max(0.0) as u64),
        tpm: params
            .get("tpm")
            .and_then(number)
            .map(|n| n.max(0.0) as u64),
        timeout: params.get("timeout").and_then(number),
        mode: info.and_then(|i| i.get("mode")).and_then(scalar),
        input_cost_per_token: cost("input_cost_per_token"),
        output_cost_per_token: cost("output_cost_per_token"),
        cost_per_image: cost("output_cost_per_image").or_else(|| cost("input_cost_per_image")),
        unused_params: unused_params(params),
    };
    Ok(deployment)
}

/// `groq/llama-3.3-70b` → (`groq`, `llama-3.3-70b`); a first segment that
/// is not a LiteLLM provider stays part of the model id.
fn split_provider(full: &str) -> (Option<String>, String) {
    match full.split_once('/') {
        Some((prefix, rest)) if KNOWN_PREFIXES.contains(&prefix) => {
            (Some(prefix.to_owned()), rest.to_owned())
        }
        _ => (None, full.to_owned()),
    }
}

/// `litellm_params` the import reads; the rest are named in the report.
const PARAMS_READ: &[&str] = &[
    "model",
    "api_base",
    "api_key",
    "rpm",
    "tpm",
    "timeout",
    "input_cost_per_token",
    "output_cost_per_token",
    "input_cost_per_image",
    "output_cost_per_image",
];

fn unused_params(params: &Mapping) -> Vec<String> {
    params
        .keys()
        .filter_map(scalar)
        .filter(|k| !PARAMS_READ.contains(&k.as_str()))
        .collect()
}

/// Retrying one deployment is LiteLLM's answer to a failure; Tollgate's is
/// the next candidate.
const NO_RETRIES: &str = "Tollgate does not retry one deployment: it moves down the chain at once, and cools a model for as long as the provider's retry-after or reset headers say";

fn read_router_settings(value: &Value, source: &mut Source, report: &mut Report) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for (key, value) in map {
        let key = scalar(key).unwrap_or_default();
        let at = format!("router_settings.{key}");
        match key.as_str() {
            "routing_strategy" => source.routing_strategy = scalar(value),
            "fallbacks" | "context_window_fallbacks" | "content_policy_fallbacks" => {
                source
                    .fallbacks
                    .extend(fallback_entries(value, &at, report));
            }
            "default_fallbacks" => source.default_fallbacks = names(value),
            "timeout" => source.request_timeout = number(value),
            "num_retries"
            | "retry_after"
            | "allowed_fails"
            | "cooldown_time"
            | "retry_policy"
            | "allowed_fails_policy" => report.unmapped(&at, NO_RETRIES),
            "redis_host" | "redis_port" | "redis_password" | "redis_url" => report.unmapped(
                &at,
                "to share quota counts between gateways, set TOLLGATE_LEDGER=redis://HOST:PORT/0",
            ),
            _ => report.unmapped(&at, "not carried over"),
        }
    }
}

fn read_litellm_settings(value: &Value, source: &mut Source, report: &mut Report) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for (key, value) in map {
        let key = scalar(key).unwrap_or_default();
        let at = format!("litellm_settings.{key}");
        match key.as_str() {
            "fallbacks" | "context_window_fallbacks" | "content_policy_fallbacks" => {
                source.fallbacks.extend(fallback_entries(value, &at, report));
            }
            "default_fallbacks" => source.default_fallbacks = names(value),
            "request_timeout" => source.request_timeout = number(value),
            "success_callback" | "failure_callback" | "callbacks" | "service_callback" => {
                report.unmapped(
                    &at,
                    "callbacks are not carried over; Tollgate writes one log line per request (TOLLGATE_LOG) and serves /admin/quotas",
                )
            }
            "cache" | "cache_params" => report.unmapped(&at, "Tollgate has no response cache"),
            "drop_params" | "modify_params" => report.unmapped(
                &at,
                "not carried over: list the fields a provider refuses under `unsupported` in its fragment, and such requests skip it",
            ),
            "set_verbose" | "json_logs" => {
                report.unmapped(&at, "logging is set with TOLLGATE_LOG (e.g. TOLLGATE_LOG=debug)")
            }
            "num_retries" | "retry_after" | "allowed_fails" | "cooldown_time" => {
                report.unmapped(&at, NO_RETRIES)
            }
            _ => report.unmapped(&at, "not carried over"),
        }
    }
}

fn read_general_settings(value: &Value, report: &mut Report) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for (key, value) in map {
        let key = scalar(key).unwrap_or_default();
        let at = format!("general_settings.{key}");
        match key.as_str() {
            // Never echo a literal key: only where it came from.
            "master_key" => {
                let message = match Setting::parse(value) {
                    Some(Setting::Env(name)) => format!(
                        "set TOLLGATE_MASTER_KEY to the value of {name} for the same key"
                    ),
                    _ => "set TOLLGATE_MASTER_KEY (in .env) to the same key; it is not copied into any file".into(),
                };
                report.unmapped(&at, message);
            }
            "database_url" | "store_model_in_db" => report.unmapped(
                &at,
                "Tollgate keeps its state in .tollgate/ledger.redb (or Redis); there is no database to point at",
            ),
            _ => report.unmapped(&at, "not carried over"),
        }
    }
}

/// Only the names: the values may be keys.
fn read_environment(value: &Value, report: &mut Report) {
    let names: Vec<String> = value
        .as_mapping()
        .map(|m| m.keys().filter_map(scalar).collect())
        .unwrap_or_default();
    if !names.is_empty() {
        report.unmapped(
            "environment_variables",
            format!(
                "put these in .env beside Tollgate (values not copied): {}",
                names.join(", ")
            ),
        );
    }
}

fn explain_top_level(key: &str) -> &'static str {
    match key {
        "guardrails" => "guardrails are not carried over; Tollgate has none",
        "mcp_servers" => "MCP servers are not carried over",
        "assistant_settings" | "files_settings" | "finetune_settings" => {
            "not carried over: Tollgate serves chat, embeddings, rerank, audio and images"
        }
        _ => "not a setting Tollgate has; not carried over",
    }
}

/// Fallbacks in either form LiteLLM accepts: a list of one-key mappings
/// (`[{gpt-4o: [gpt-4o-mini]}]`) or one mapping (`{gpt-4o: [gpt-4o-mini]}`).
fn fallback_entries(value: &Value, source: &str, report: &mut Report) -> Vec<Fallback> {
    let mut out = Vec::new();
    match value {
        Value::Sequence(items) => {
            for item in items {
                match item.as_mapping() {
                    Some(map) => take_fallbacks(map, source, &mut out, report),
                    None => report.unmapped(source, "an entry that is not `{model: [fallbacks]}`"),
                }
            }
        }
        Value::Mapping(map) => take_fallbacks(map, source, &mut out, report),
        Value::Null => {}
        _ => report.unmapped(source, "not a list or mapping of fallbacks"),
    }
    out
}

fn take_fallbacks(map: &Mapping, source: &str, out: &mut Vec<Fallback>, report: &mut Report) {
    for (from, to) in map {
        match scalar(from) {
            Some(from) => out.push(Fallback {
                from,
                to: names(to),
                source: source.to_owned(),
            }),
            None => report.unmapped(source, "a fallback key that is not a model name"),
        }
    }
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

fn names(value: &Value) -> Vec<String> {
    list(value).iter().filter_map(scalar).collect()
}

/// A string, number or bool as text (`model_name: 7` is a name too).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number written as one, or as a string of one (`rpm: "30"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(yaml: &str) -> (Source, Report) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut report = Report::default();
        let source = read(&path, None, &mut report).unwrap();
        (source, report)
    }

    #[test]
    fn a_deployment_keeps_its_prefix_key_reference_and_limits() {
        let (source, _) = source(
            "model_list:\n  - model_name: fast\n    litellm_params:\n      model: groq/llama-3.1-8b-instant\n      api_key: os.environ/MY_GROQ\n      rpm: 30\n      tpm: \"6000\"\n    model_info: { mode: chat, input_cost_per_token: 0.0000002 }\n",
        );
        let d = &source.deployments[0];
        assert_eq!(d.provider.as_deref(), Some("groq"));
        assert_eq!(d.model, "llama-3.1-8b-instant");
        assert_eq!(d.api_key, Some(Setting::Env("MY_GROQ".into())));
        assert_eq!((d.rpm, d.tpm), (Some(30), Some(6000)));
        assert_eq!(d.input_cost_per_token, Some(0.0000002));
    }

    #[test]
    fn a_model_id_with_a_slash_but_no_provider_stays_whole() {
        assert_eq!(
            split_provider("meta-llama/Llama-3.1-8B"),
            (None, "meta-llama/Llama-3.1-8B".into())
        );
        assert_eq!(
            split_provider("openrouter/openai/gpt-oss-20b"),
            (Some("openrouter".into()), "openai/gpt-oss-20b".into())
        );
    }

    #[test]
    fn both_fallback_forms_are_read_and_bad_entries_reported() {
        let mut report = Report::default();
        let list: Value = serde_yaml::from_str("[{a: [b, c]}, {d: [e]}, 7]").unwrap();
        let map: Value = serde_yaml::from_str("{a: [b]}").unwrap();
        let from_list = fallback_entries(&list, "x", &mut report);
        let from_map = fallback_entries(&map, "y", &mut report);
        assert_eq!(from_list.len(), 2);
        assert_eq!(from_list[0].to, ["b", "c"]);
        assert_eq!(from_map[0].from, "a");
        assert_eq!(report.unmapped_items().len(), 1);
    }

    #[test]
    fn a_broken_entry_is_reported_and_the_rest_read() {
        let (source, report) = source(
            "model_list:\n  - model_name: a\n  - model_name: b\n    litellm_params: { model: openai/gpt-4o }\nguardrails: []\n",
        );
        assert_eq!(source.deployments.len(), 1);
        assert_eq!(source.unreadable, 1);
        let text = report.to_string();
        assert!(
            text.contains("model_list[0]") && text.contains("no litellm_params"),
            "{text}"
        );
        assert!(text.contains("guardrails"), "{text}");
    }

    #[test]
    fn environment_values_and_a_literal_master_key_never_reach_the_report() {
        let (_, report) = source(
            "model_list: []\nenvironment_variables: { GROQ_API_KEY: gsk-secret-1 }\ngeneral_settings: { master_key: sk-master-2 }\n",
        );
        let text = report.to_string();
        assert!(text.contains("GROQ_API_KEY"), "{text}");
        assert!(
            !text.contains("gsk-secret-1") && !text.contains("sk-master-2"),
            "{text}"
        );
    }

    #[test]
    fn includes_are_read_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("more")).unwrap();
        std::fs::write(
            dir.path().join("more/models.yaml"),
            "model_list:\n  - model_name: b\n    litellm_params: { model: groq/x }\n",
        )
        .unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            "include: [more/models.yaml]\nmodel_list:\n  - model_name: a\n    litellm_params: { model: groq/y }\n",
        )
        .unwrap();
        let mut report = Report::default();
        let source = read(&path, None, &mut report).unwrap();
        let names: Vec<_> = source
            .deployments
            .iter()
            .map(|d| d.model_name.as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
    }
}
