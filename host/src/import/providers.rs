//! Which Tollgate provider a LiteLLM deployment becomes. The shipped
//! catalogue (`providers/*.yaml`, compiled in) is the first answer: an
//! imported Groq model gets Groq's fragment, flag and free-tier limits, and a
//! model named like a shipped alias (as the original gateway's were) gets
//! that alias's provider. Other OpenAI-compatible servers become a provider
//! of their own, named for their host.

use super::litellm::{Deployment, Setting};
use serde_yaml::{Mapping, Value};

/// Every shipped fragment, by file name.
const SHIPPED: &[(&str, &str)] = &[
    (
        "anthropic",
        include_str!("../../../providers/anthropic.yaml"),
    ),
    ("cerebras", include_str!("../../../providers/cerebras.yaml")),
    (
        "claudebox",
        include_str!("../../../providers/claudebox.yaml"),
    ),
    ("cohere", include_str!("../../../providers/cohere.yaml")),
    ("groq", include_str!("../../../providers/groq.yaml")),
    (
        "huggingface",
        include_str!("../../../providers/huggingface.yaml"),
    ),
    ("mistral", include_str!("../../../providers/mistral.yaml")),
    ("ollama", include_str!("../../../providers/ollama.yaml")),
    (
        "ollama-cuda",
        include_str!("../../../providers/ollama-cuda.yaml"),
    ),
    ("openai", include_str!("../../../providers/openai.yaml")),
    (
        "openrouter",
        include_str!("../../../providers/openrouter.yaml"),
    ),
    (
        "pibox-zai",
        include_str!("../../../providers/pibox-zai.yaml"),
    ),
    ("sdcpp", include_str!("../../../providers/sdcpp.yaml")),
    (
        "sdcpp-cuda",
        include_str!("../../../providers/sdcpp-cuda.yaml"),
    ),
    ("talkies", include_str!("../../../providers/talkies.yaml")),
    (
        "talkies-cuda",
        include_str!("../../../providers/talkies-cuda.yaml"),
    ),
];

/// LiteLLM's provider prefix → the shipped fragment that speaks for it.
const PREFIX_TO_SHIPPED: &[(&str, &str)] = &[
    ("groq", "groq"),
    ("cerebras", "cerebras"),
    ("openrouter", "openrouter"),
    ("huggingface", "huggingface"),
    ("mistral", "mistral"),
    ("codestral", "mistral"),
    ("cohere", "cohere"),
    ("cohere_chat", "cohere"),
    ("anthropic", "anthropic"),
    ("ollama", "ollama"),
    ("ollama_chat", "ollama"),
    ("openai", "openai"),
    ("text-completion-openai", "openai"),
];

/// OpenAI-compatible providers LiteLLM knows by prefix and Tollgate does
/// not ship: (prefix, fragment name, base URL, LiteLLM's key variable).
const COMPATIBLE: &[(&str, &str, &str, &str)] = &[
    (
        "deepseek",
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    (
        "together_ai",
        "together",
        "https://api.together.xyz/v1",
        "TOGETHERAI_API_KEY",
    ),
    (
        "fireworks_ai",
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_AI_API_KEY",
    ),
    ("xai", "xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    (
        "deepinfra",
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        "DEEPINFRA_API_KEY",
    ),
    (
        "perplexity",
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITYAI_API_KEY",
    ),
    (
        "nvidia_nim",
        "nvidia-nim",
        "https://integrate.api.nvidia.com/v1",
        "NVIDIA_NIM_API_KEY",
    ),
    (
        "sambanova",
        "sambanova",
        "https://api.sambanova.ai/v1",
        "SAMBANOVA_API_KEY",
    ),
    (
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
    ),
];

/// Prefixes of OpenAI-compatible servers that need an `api_base`.
const SELF_HOSTED: &[&str] = &[
    "openai",
    "hosted_vllm",
    "vllm",
    "lm_studio",
    "llamafile",
    "custom_openai",
    "litellm_proxy",
];

/// The shipped catalogue, parsed.
pub struct Shipped {
    fragments: Vec<(String, Mapping)>,
}

impl Shipped {
    pub fn load() -> Shipped {
        let fragments = SHIPPED
            .iter()
            .map(|(name, text)| {
                let value: Value = serde_yaml::from_str(text)
                    .unwrap_or_else(|e| panic!("shipped providers/{name}.yaml: {e}"));
                let map = value.as_mapping().cloned().unwrap_or_default();
                (name.to_string(), map)
            })
            .collect();
        Shipped { fragments }
    }

    fn named(&self, name: &str) -> Option<&Mapping> {
        self.fragments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    fn with_alias(&self, alias: &str) -> Option<&Mapping> {
        self.fragments.iter().map(|(_, m)| m).find(|m| {
            models(m)
                .iter()
                .filter_map(Value::as_mapping)
                .any(|model| text(model, "alias") == Some(alias))
        })
    }

    /// The shipped fragment whose fixed `base_url` is on this host.
    fn on_host(&self, host: &str) -> Option<&Mapping> {
        self.fragments.iter().map(|(_, m)| m).find(|m| {
            text(m, "base_url")
                .filter(|u| !u.contains("${"))
                .and_then(host_of)
                .is_some_and(|h| h == host)
        })
    }
}

/// A provider to import deployments into.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The fragment's name, before any `-2` that keeps two apart.
    pub name: String,
    /// Provider-level fields (everything but `models`), as they will be written.
    pub fields: Mapping,
    /// Models the shipped fragment lists, to fill in limits, prices and modes.
    pub known_models: Vec<Mapping>,
    /// Said in the report when a field was guessed (a custom provider's tier).
    pub assumption: Option<String>,
}

/// The provider `d` goes to, or why it has none.
pub fn profile(d: &Deployment, shipped: &Shipped) -> Result<Profile, String> {
    if let Some(fragment) = shipped.with_alias(&d.model_name) {
        return Ok(from_shipped(fragment, d));
    }
    let prefix = d.provider.as_deref().or_else(|| infer_prefix(&d.model));
    let literal_base = match &d.api_base {
        Some(Setting::Literal(url)) => Some(url.as_str()),
        _ => None,
    };
    if let Some(host) = literal_base.and_then(host_of)
        && let Some(fragment) = shipped.on_host(&host)
    {
        return Ok(from_shipped(fragment, d));
    }
    if let Some(prefix) = prefix
        && let Some((_, name)) = PREFIX_TO_SHIPPED.iter().find(|(p, _)| *p == prefix)
    {
        let fragment = shipped
            .named(name)
            .expect("every mapped fragment is shipped");
        let moved = literal_base.is_some_and(|url| !same_place(fragment, url));
        let self_hosted = SELF_HOSTED.contains(&prefix) && d.api_base.is_some();
        if !(moved || self_hosted) {
            return Ok(from_shipped(fragment, d));
        }
        let adapter = text(fragment, "adapter").unwrap_or("openai").to_owned();
        let mut profile = custom(d, &adapter)?;
        if prefix == "huggingface" {
            // A text-generation-inference server's OpenAI root is `/v1`.
            let base = text(&profile.fields, "base_url").unwrap_or_default();
            let rooted = v1_root(base);
            profile.fields.insert("base_url".into(), rooted.into());
        }
        return Ok(profile);
    }
    if let Some(prefix) = prefix
        && let Some((_, name, base, key)) = COMPATIBLE.iter().find(|(p, ..)| *p == prefix)
    {
        return Ok(compatible(name, base, key));
    }
    if d.api_base.is_some() && prefix.is_none_or(|p| SELF_HOSTED.contains(&p)) {
        return custom(d, "openai");
    }
    Err(match prefix {
        Some(p) => format!("provider `{p}` has no Tollgate adapter"),
        None => format!(
            "`{}` names no provider (no `provider/` prefix and no api_base)",
            d.model
        ),
    })
}

/// A model LiteLLM would route by its name alone.
fn infer_prefix(model: &str) -> Option<&'static str> {
    let openai = [
        "gpt-",
        "chatgpt-",
        "o1",
        "o3",
        "o4",
        "dall-e",
        "whisper-",
        "tts-",
        "text-embedding-",
    ];
    if openai.iter().any(|p| model.starts_with(p)) {
        Some("openai")
    } else if model.starts_with("claude") {
        Some("anthropic")
    } else if ["command", "embed-", "rerank-"]
        .iter()
        .any(|p| model.starts_with(p))
    {
        Some("cohere")
    } else {
        None
    }
}

fn from_shipped(fragment: &Mapping, d: &Deployment) -> Profile {
    let mut fields = fragment.clone();
    fields.remove("models");
    let name = text(fragment, "name").unwrap_or_default().to_owned();
    if let Some(base) = &d.api_base {
        let shipped = text(fragment, "base_url").unwrap_or_default();
        let ollama = text(fragment, "adapter") == Some("ollama");
        fields.insert("base_url".into(), base_url(shipped, base, ollama).into());
    }
    Profile {
        name,
        fields,
        known_models: models(fragment)
            .iter()
            .filter_map(Value::as_mapping)
            .cloned()
            .collect(),
        assumption: None,
    }
}

/// The URL a shipped `base_url` becomes when LiteLLM set `api_base`: the
/// shipped variable stays, with LiteLLM's address as its default. Ollama's
/// OpenAI-compatible root is under `/v1`, which LiteLLM's api_base omits.
fn base_url(shipped: &str, api_base: &Setting, ollama: bool) -> String {
    let suffix = |url: &str| {
        if ollama {
            v1_root(url)
        } else {
            url.trim_end_matches('/').to_owned()
        }
    };
    match api_base {
        Setting::Env(name) => suffix(&format!("${{{name}}}")),
        Setting::Literal(url) => match variable_of(shipped) {
            Some(var) => format!("${{{var}:-{}}}", suffix(url)),
            None => suffix(url),
        },
    }
}

/// `http://box:11434` → `http://box:11434/v1`; a URL that ends in `/v1`
/// already stays as it is.
fn v1_root(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v1") {
        url.to_owned()
    } else {
        format!("{url}/v1")
    }
}

/// `${VAR:-default}` → `VAR`.
fn variable_of(url: &str) -> Option<&str> {
    let inner = url.strip_prefix("${")?.strip_suffix('}')?;
    Some(inner.split_once(":-").map_or(inner, |(v, _)| v))
}

/// Whether `url` is where the shipped fragment already points (or could,
/// through its variable).
fn same_place(fragment: &Mapping, url: &str) -> bool {
    let shipped = text(fragment, "base_url").unwrap_or_default();
    variable_of(shipped).is_some() || host_of(shipped) == host_of(url)
}

fn compatible(name: &str, base: &str, key: &str) -> Profile {
    let mut fields = Mapping::new();
    fields.insert("name".into(), name.into());
    fields.insert("flag".into(), flag_of(name).into());
    fields.insert("adapter".into(), "openai".into());
    fields.insert("base_url".into(), base.into());
    fields.insert("api_key".into(), format!("${{{key}}}").into());
    fields.insert("tier".into(), "paid".into());
    Profile {
        name: name.to_owned(),
        fields,
        known_models: Vec::new(),
        assumption: Some(format!(
            "marked `tier: paid`; if your {name} account is a free tier, say `tier: free` and add its limits"
        )),
    }
}

/// A provider of its own for a server LiteLLM reached by `api_base`.
fn custom(d: &Deployment, adapter: &str) -> Result<Profile, String> {
    let (base, host) = match &d.api_base {
        Some(Setting::Literal(url)) => {
            let host = host_of(url).ok_or_else(|| format!("api_base `{url}` is not a URL"))?;
            (url.trim_end_matches('/').to_owned(), host)
        }
        Some(Setting::Env(name)) => (format!("${{{name}}}"), name.to_lowercase()),
        None => return Err("no api_base".into()),
    };
    let local = is_local(&host);
    let name = name_for(&host, port_of(&base));
    let mut fields = Mapping::new();
    fields.insert("name".into(), name.clone().into());
    fields.insert("flag".into(), flag_of(&name).into());
    fields.insert("adapter".into(), adapter.into());
    fields.insert("base_url".into(), base.clone().into());
    fields.insert("tier".into(), if local { "local" } else { "paid" }.into());
    let assumption = if local {
        format!("{base} looks like your own server: marked `tier: local`")
    } else {
        format!(
            "{base} marked `tier: paid`; if it is a free tier, say `tier: free` and add its limits"
        )
    };
    Ok(Profile {
        name,
        fields,
        known_models: Vec::new(),
        assumption: Some(assumption),
    })
}

/// `api.together.xyz` → `together`, `llm.example.com` → `example` (the
/// domain's owner); `127.0.0.1:8000` → `local-8000`;
/// a single-label host (a container's name) stays as it is.
fn name_for(host: &str, port: Option<u16>) -> String {
    let numeric = host.parse::<std::net::IpAddr>().is_ok();
    if numeric || host == "localhost" {
        return format!("local-{}", port.unwrap_or(80));
    }
    let labels: Vec<&str> = host.split('.').collect();
    let meaningful: Vec<&str> = labels
        .iter()
        .take(labels.len().saturating_sub(1).max(1))
        .copied()
        .filter(|l| !matches!(*l, "api" | "www" | "inference" | "gateway" | "router"))
        .collect();
    let name = meaningful.last().copied().unwrap_or(labels[0]);
    slug(name)
}

fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_owned()
}

pub fn flag_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Loopback, private networks, and names only a local network resolves
/// (a container's name, `.local`, `.internal`).
fn is_local(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
            }
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
        };
    }
    host == "localhost"
        || !host.contains('.')
        || host.ends_with(".local")
        || host.ends_with(".internal")
        || host.ends_with(".lan")
}

pub fn host_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
}

fn port_of(url: &str) -> Option<u16> {
    reqwest::Url::parse(url).ok()?.port_or_known_default()
}

pub fn text<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn models(fragment: &Mapping) -> &[Value] {
    fragment
        .get("models")
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(
        name: &str,
        provider: Option<&str>,
        model: &str,
        base: Option<&str>,
    ) -> Deployment {
        Deployment {
            at: "model_list[0]".into(),
            model_name: name.into(),
            provider: provider.map(str::to_owned),
            model: model.into(),
            api_base: base.map(|b| Setting::Literal(b.into())),
            api_key: None,
            rpm: None,
            tpm: None,
            timeout: None,
            mode: None,
            input_cost_per_token: None,
            output_cost_per_token: None,
            cost_per_image: None,
            unused_params: Vec::new(),
        }
    }

    #[test]
    fn every_shipped_fragment_is_known_to_the_import() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../providers");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".yaml").map(str::to_owned))
            .filter(|n| n != "fallbacks" && n != "policies")
            .collect();
        on_disk.sort();
        let known: Vec<&str> = SHIPPED.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, known, "add the new fragment to SHIPPED");
    }

    #[test]
    fn a_known_prefix_gets_the_shipped_fragment() {
        let shipped = Shipped::load();
        let p = profile(
            &deployment("x", Some("groq"), "llama-3.3-70b-versatile", None),
            &shipped,
        )
        .unwrap();
        assert_eq!(p.name, "groq");
        assert_eq!(text(&p.fields, "flag"), Some("GROQ"));
        assert!(!p.known_models.is_empty());
    }

    #[test]
    fn a_shipped_alias_wins_over_the_prefix() {
        let shipped = Shipped::load();
        let d = deployment(
            "claudebox-sonnet",
            Some("openai"),
            "sonnet",
            Some("http://claudebox:8080/v1"),
        );
        let p = profile(&d, &shipped).unwrap();
        assert_eq!(p.name, "claudebox");
        assert_eq!(
            text(&p.fields, "base_url"),
            Some("${CLAUDEBOX_BASE_URL:-http://claudebox:8080/v1}")
        );
    }

    #[test]
    fn an_openai_prefix_on_a_groq_url_is_groq() {
        let shipped = Shipped::load();
        let d = deployment(
            "g",
            Some("openai"),
            "llama",
            Some("https://api.groq.com/openai/v1"),
        );
        assert_eq!(profile(&d, &shipped).unwrap().name, "groq");
    }

    #[test]
    fn self_hosted_servers_are_named_for_their_host_and_tiered_by_it() {
        let shipped = Shipped::load();
        let local = profile(
            &deployment("a", Some("openai"), "m", Some("http://127.0.0.1:8000/v1")),
            &shipped,
        )
        .unwrap();
        assert_eq!(local.name, "local-8000");
        assert_eq!(text(&local.fields, "tier"), Some("local"));
        let remote = profile(
            &deployment(
                "b",
                Some("hosted_vllm"),
                "m",
                Some("https://llm.example.com/v1"),
            ),
            &shipped,
        )
        .unwrap();
        assert_eq!(remote.name, "example");
        assert_eq!(text(&remote.fields, "tier"), Some("paid"));
        assert_eq!(text(&remote.fields, "flag"), Some("EXAMPLE"));
    }

    #[test]
    fn ollama_gets_its_v1_root() {
        let shipped = Shipped::load();
        let d = deployment(
            "o",
            Some("ollama_chat"),
            "llama3.2:3b",
            Some("http://gpu-box:11434"),
        );
        let p = profile(&d, &shipped).unwrap();
        assert_eq!(p.name, "ollama");
        assert_eq!(
            text(&p.fields, "base_url"),
            Some("${OLLAMA_BASE_URL:-http://gpu-box:11434/v1}")
        );
    }

    #[test]
    fn an_unknown_provider_is_a_reason_not_a_guess() {
        let shipped = Shipped::load();
        let err = profile(
            &deployment("b", Some("bedrock"), "anthropic.claude-v2", None),
            &shipped,
        )
        .unwrap_err();
        assert!(err.contains("bedrock"), "{err}");
        let err = profile(&deployment("m", None, "mystery-model", None), &shipped).unwrap_err();
        assert!(err.contains("mystery-model"), "{err}");
    }

    #[test]
    fn an_anthropic_compatible_host_keeps_the_anthropic_adapter() {
        let shipped = Shipped::load();
        let d = deployment(
            "glm",
            Some("anthropic"),
            "glm-4.7",
            Some("https://api.z.ai/api/anthropic"),
        );
        let p = profile(&d, &shipped).unwrap();
        assert_eq!(text(&p.fields, "adapter"), Some("anthropic"));
        assert_eq!(p.name, "z");
    }
}
