//! The provider catalogue: `providers/*.yaml` fragments and `fallbacks.yaml`.
//!
//! Loading checks everything a typo could break (unknown fields, duplicate
//! aliases, unknown adapters, chains that name missing aliases or mix modes)
//! and reports each problem with the file and field it is in, so `tollgate
//! check` can point at the line to fix. A provider is *enabled* only when its
//! flag is exactly `1` and its key reference resolves; disabled providers stay
//! in the catalogue (for `check`) but are invisible to clients.

use crate::env::Env;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a model does; each mode is one OpenAI endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Chat,
    Embedding,
    Rerank,
    Transcription,
    Speech,
    Image,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Chat => "chat",
            Mode::Embedding => "embedding",
            Mode::Rerank => "rerank",
            Mode::Transcription => "transcription",
            Mode::Speech => "speech",
            Mode::Image => "image",
        }
    }
}

/// A request field some providers refuse. A request that carries one skips
/// the candidates whose fragment lists it under `unsupported`, instead of
/// failing there (the agent boxes reject tools and `response_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Tools,
    ResponseFormat,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Tools => "tools",
            Feature::ResponseFormat => "response_format",
        }
    }
}

/// How a provider is paid for; chains go free → subscription → paid → local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Subscription,
    Paid,
    Local,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Subscription => "subscription",
            Tier::Paid => "paid",
            Tier::Local => "local",
        }
    }
}

/// Published limits. Requests or tokens per minute, hour, day and month, and
/// a dollar credit spent at the models' prices.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub rph: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tph: Option<u64>,
    pub tpd: Option<u64>,
    pub rpmonth: Option<u64>,
    pub tpmonth: Option<u64>,
    pub credit_usd: Option<f64>,
}

/// What a request costs, for providers whose limit is a dollar credit: USD
/// per million tokens, plus a flat USD per request (image models).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub per_request: f64,
}

impl Price {
    /// Cost in millionths of a dollar, rounded up.
    pub fn micro_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        let micros = prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok
            + self.per_request * 1e6;
        micros.max(0.0).ceil() as u64
    }
}

/// What a local model needs from the GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub device: String,
    pub vram_mb: u64,
}

impl Gpu {
    /// The memory it holds on the shared GPU: its estimate when it runs on
    /// CUDA, nothing when it runs on the CPU.
    pub fn cuda_mb(&self) -> u64 {
        if self.device == "cuda" {
            self.vram_mb
        } else {
            0
        }
    }
}

/// How a local model server is shared: its fragment's `local:` block. A
/// provider with one (or with a `gpu:` model) is a managed local backend:
/// its models are loaded, counted and unloaded through the lease table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalBackend {
    /// Jobs it may run at once (an image server runs one); unlimited when absent.
    pub concurrency: Option<u32>,
    /// Models it keeps loaded at once (sd.cpp holds one and swaps);
    /// unlimited when absent.
    pub max_loaded: Option<u32>,
    /// Seconds a backend may sit idle before its models are unloaded.
    pub idle_ttl: f64,
    /// Seconds a request may wait for a job slot or GPU memory before the
    /// attempt is skipped and the chain moves on.
    pub queue_timeout: f64,
}

impl Default for LocalBackend {
    fn default() -> Self {
        LocalBackend {
            concurrency: None,
            max_loaded: None,
            idle_ttl: 300.0,
            queue_timeout: 30.0,
        }
    }
}

impl LocalBackend {
    pub fn idle_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.idle_ttl)
    }
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.queue_timeout)
    }
}

/// How long to wait on an upstream, in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// To open the connection.
    pub connect: f64,
    /// From sending the request to the response headers (a non-streaming
    /// answer arrives whole, so this bounds the whole generation).
    pub response: f64,
    /// Between two pieces of a streamed body.
    pub idle: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 10.0,
            response: 300.0,
            idle: 120.0,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_secs_f64(self.connect)
    }
    pub fn response(&self) -> Duration {
        Duration::from_secs_f64(self.response)
    }
    pub fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.idle)
    }
}

/// How the provider counts, for the quota ledger.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// How per-minute and per-hour limits refill: `sliding` (the default,
    /// safe against any provider) or `bucket` (continuous, as Cerebras does).
    pub windows: WindowStyle,
    /// UTC time (`HH:MM`) at which per-day counts reset.
    pub daily_reset: String,
    /// Day of the month (1–28) on which per-month counts and the credit reset.
    pub monthly_reset_day: u32,
    /// Tokens a reply is assumed to need when the client sets no `max_tokens`;
    /// held only until the provider reports real usage.
    pub completion_estimate: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            windows: WindowStyle::Sliding,
            daily_reset: "00:00".into(),
            monthly_reset_day: 1,
            completion_estimate: 512,
        }
    }
}

impl Quota {
    /// Milliseconds after UTC midnight at which days begin.
    pub fn daily_offset_ms(&self) -> u64 {
        crate::ledger::clock::parse_time_of_day(&self.daily_reset).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowStyle {
    Sliding,
    Bucket,
}

/// One `providers/<name>.yaml` file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    flag: String,
    adapter: String,
    base_url: String,
    #[serde(default)]
    api_key: Option<String>,
    tier: Tier,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    quota: Quota,
    /// Default price of the provider's models, for a `credit_usd` limit.
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    adapter_options: Option<serde_json::Value>,
    /// Request fields every model of the provider refuses.
    #[serde(default)]
    unsupported: Vec<Feature>,
    /// Set for a local model server shared through the lease table.
    #[serde(default)]
    local: Option<LocalBackend>,
    /// Where the provider publishes its limits; for people, not the gateway.
    #[serde(default)]
    docs: Option<String>,
    models: Vec<ModelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    alias: String,
    model: String,
    mode: Mode,
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    price: Option<Price>,
    #[serde(default)]
    gpu: Option<Gpu>,
    /// Request fields this model refuses, beside the provider's.
    #[serde(default)]
    unsupported: Vec<Feature>,
    #[serde(default)]
    notes: Option<String>,
}

/// An API key. Never printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A provider, resolved against the environment.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub flag: String,
    pub adapter: String,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub tier: Tier,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub quota: Quota,
    /// `adapter_options` as JSON text, handed to the adapter with each call.
    pub options: String,
    /// How it is shared, when it is a managed local backend (a `local:`
    /// block, or a model with `gpu:`).
    pub local: Option<LocalBackend>,
    pub docs: Option<String>,
    pub source: PathBuf,
    /// `Ok` when enabled, else why not (for `tollgate check`).
    pub status: Result<(), String>,
}

impl Provider {
    pub fn enabled(&self) -> bool {
        self.status.is_ok()
    }
}

/// A model alias, with its provider.
#[derive(Debug)]
pub struct Model {
    pub alias: String,
    pub model: String,
    pub mode: Mode,
    pub tier: Tier,
    pub limits: Limits,
    pub price: Option<Price>,
    pub gpu: Option<Gpu>,
    /// Request fields it refuses (its own and its provider's).
    pub unsupported: Vec<Feature>,
    pub notes: Option<String>,
    pub provider: Arc<Provider>,
}

impl Model {
    pub fn enabled(&self) -> bool {
        self.provider.enabled()
    }
}

/// Every problem found, each naming its file and field.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The loaded catalogue.
#[derive(Debug, Default)]
pub struct Catalog {
    pub providers: Vec<Arc<Provider>>,
    /// Every alias, in file order, enabled or not.
    pub models: Vec<Arc<Model>>,
    by_alias: HashMap<String, Arc<Model>>,
    pub fallbacks: BTreeMap<String, Vec<String>>,
    pub policies: Policies,
    /// Where the policies came from, for messages.
    policies_source: Option<PathBuf>,
}

pub const FALLBACKS_FILE: &str = "fallbacks.yaml";
pub const POLICIES_FILE: &str = "policies.yaml";
/// The routing policy used where `policies.yaml` names none.
pub const DEFAULT_POLICY: &str = "free-first";

/// `policies.yaml`: which routing policy orders each alias's candidates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// For every alias not listed; `free-first` when absent.
    #[serde(default)]
    pub default: Option<String>,
    /// Alias → policy plugin name.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

impl Policies {
    pub fn for_alias(&self, alias: &str) -> &str {
        self.aliases
            .get(alias)
            .or(self.default.as_ref())
            .map_or(DEFAULT_POLICY, String::as_str)
    }
}

impl Catalog {
    /// Loads every fragment in `dir`. `adapter_known` says whether an adapter
    /// name refers to a loaded plugin.
    pub fn load(
        dir: &Path,
        env: &Env,
        adapter_known: &dyn Fn(&str) -> bool,
    ) -> Result<Catalog, ConfigError> {
        let mut problems = Vec::new();
        let mut catalog = Catalog::default();
        let files = match fragment_files(dir) {
            Ok(files) => files,
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("{}: {e}", dir.display())],
                });
            }
        };
        for path in &files {
            if let Err(mut found) = catalog.add_fragment(path, env, adapter_known) {
                problems.append(&mut found);
            }
        }
        let fallbacks = dir.join(FALLBACKS_FILE);
        if fallbacks.exists()
            && let Err(mut found) = catalog.add_fallbacks(&fallbacks)
        {
            problems.append(&mut found);
        }
        let policies = dir.join(POLICIES_FILE);
        if policies.exists()
            && let Err(mut found) = catalog.add_policies(&policies)
        {
            problems.append(&mut found);
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn add_fragment(
        &mut self,
        path: &Path,
        env: &Env,
        adapter_known: &dyn Fn(&str) -> bool,
    ) -> Result<(), Vec<String>> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{at}: {e}")])?;
        let file: ProviderFile =
            serde_yaml::from_str(&text).map_err(|e| vec![format!("{at}: {e}")])?;
        let mut problems = Vec::new();
        check_provider(&file, adapter_known, &mut |field, msg| {
            problems.push(format!("{at}: {field}: {msg}"))
        });
        if let Some(other) = self.providers.iter().find(|p| p.name == file.name) {
            problems.push(format!(
                "{at}: name: provider `{}` is already defined in {}",
                file.name,
                other.source.display()
            ));
        }
        let provider = Arc::new(resolve_provider(&file, path, env));
        for (i, model) in file.models.iter().enumerate() {
            if let Some(existing) = self.by_alias.get(&model.alias) {
                problems.push(format!(
                    "{at}: models[{i}].alias: `{}` is already defined in {}",
                    model.alias,
                    existing.provider.source.display()
                ));
                continue;
            }
            let model = Arc::new(Model {
                alias: model.alias.clone(),
                model: model.model.clone(),
                mode: model.mode,
                tier: model.tier.unwrap_or(file.tier),
                limits: model.limits.clone(),
                price: model.price.clone().or_else(|| file.price.clone()),
                gpu: model.gpu.clone(),
                unsupported: file
                    .unsupported
                    .iter()
                    .chain(&model.unsupported)
                    .copied()
                    .collect(),
                notes: model.notes.clone(),
                provider: provider.clone(),
            });
            self.by_alias.insert(model.alias.clone(), model.clone());
            self.models.push(model);
        }
        self.providers.push(provider);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn add_fallbacks(&mut self, path: &Path) -> Result<(), Vec<String>> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{at}: {e}")])?;
        let chains: BTreeMap<String, Vec<String>> =
            serde_yaml::from_str(&text).map_err(|e| vec![format!("{at}: {e}")])?;
        let mut problems = Vec::new();
        for (alias, chain) in &chains {
            let Some(head) = self.by_alias.get(alias) else {
                problems.push(format!("{at}: {alias}: no provider defines this alias"));
                continue;
            };
            let mut seen = HashSet::from([alias.as_str()]);
            for (i, next) in chain.iter().enumerate() {
                match self.by_alias.get(next) {
                    None => problems.push(format!(
                        "{at}: {alias}[{i}]: `{next}` is not defined by any provider"
                    )),
                    Some(model) if model.mode != head.mode => problems.push(format!(
                        "{at}: {alias}[{i}]: `{next}` serves {}, but `{alias}` serves {}",
                        model.mode.as_str(),
                        head.mode.as_str()
                    )),
                    Some(_) if !seen.insert(next) => problems.push(format!(
                        "{at}: {alias}[{i}]: `{next}` appears twice in the chain"
                    )),
                    Some(_) => {}
                }
            }
        }
        self.fallbacks = chains;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn add_policies(&mut self, path: &Path) -> Result<(), Vec<String>> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{at}: {e}")])?;
        let policies: Policies = if text.trim().is_empty() {
            Policies::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| vec![format!("{at}: {e}")])?
        };
        let problems: Vec<String> = policies
            .aliases
            .keys()
            .filter(|alias| !self.by_alias.contains_key(*alias))
            .map(|alias| format!("{at}: aliases.{alias}: no provider defines this alias"))
            .collect();
        self.policies = policies;
        self.policies_source = Some(path.to_path_buf());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Checks that every policy `policies.yaml` names is a loaded policy plugin.
    pub fn check_policies(&self, known: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        let at = self
            .policies_source
            .as_ref()
            .map_or_else(|| POLICIES_FILE.to_owned(), |p| p.display().to_string());
        let named = self
            .policies
            .default
            .iter()
            .map(|p| ("default".to_owned(), p))
            .chain(
                self.policies
                    .aliases
                    .iter()
                    .map(|(alias, p)| (format!("aliases.{alias}"), p)),
            );
        let problems: Vec<String> = named
            .filter(|(_, policy)| !known(policy))
            .map(|(field, policy)| {
                format!("{at}: {field}: no policy plugin named `{policy}` is bundled or in the plugins folder")
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// An alias's model, enabled or not.
    pub fn model(&self, alias: &str) -> Option<&Arc<Model>> {
        self.by_alias.get(alias)
    }

    /// The models to try for `alias`, in order: itself, then its chain,
    /// enabled ones only. Empty when the alias itself is unknown or disabled.
    pub fn candidates(&self, alias: &str) -> Vec<Arc<Model>> {
        let Some(head) = self.by_alias.get(alias).filter(|m| m.enabled()) else {
            return Vec::new();
        };
        let chain = self.fallbacks.get(alias).into_iter().flatten();
        std::iter::once(head)
            .chain(chain.filter_map(|next| self.by_alias.get(next)))
            .filter(|m| m.enabled())
            .cloned()
            .collect()
    }

    /// Every key in use, to scrub from anything shown to clients or logs.
    pub fn secrets(&self) -> Vec<String> {
        self.providers
            .iter()
            .filter_map(|p| p.api_key.as_ref())
            .map(|s| s.expose().to_owned())
            .collect()
    }
}

/// `*.yaml` / `*.yml` files in `dir` except the fallbacks and policies
/// files, sorted.
fn fragment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let yaml = path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            let special = path
                .file_name()
                .is_some_and(|n| n == FALLBACKS_FILE || n == POLICIES_FILE);
            yaml && !special
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Problems that do not depend on the environment.
fn check_provider(
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
    if [t.connect, t.response, t.idle]
        .iter()
        .any(|s| !s.is_finite() || *s <= 0.0)
    {
        problem(
            "timeouts",
            "every timeout must be a positive number of seconds".into(),
        );
    }
    if crate::ledger::clock::parse_time_of_day(&file.quota.daily_reset).is_none() {
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
        if !seconds.is_finite() || seconds <= 0.0 {
            problem(field, "must be a positive number of seconds".into());
        }
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

/// `${NAME}` → `NAME`.
fn key_reference(text: &str) -> Option<&str> {
    let name = text.strip_prefix("${")?.strip_suffix('}')?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

fn resolve_provider(file: &ProviderFile, path: &Path, env: &Env) -> Provider {
    let mut base_url = file.base_url.clone();
    let mut api_key = None;
    let status = (|| {
        match env.get(&file.flag) {
            Some("1") => {}
            Some(other) => return Err(format!("{}={other} (only `1` enables it)", file.flag)),
            None => return Err(format!("{} is not set to 1", file.flag)),
        }
        if let Some(reference) = file.api_key.as_deref().and_then(key_reference) {
            let key = env
                .get(reference)
                .ok_or_else(|| format!("{reference} is not set"))?;
            api_key = Some(Secret::new(key.to_owned()));
        }
        base_url = env
            .expand(&file.base_url)
            .map_err(|e| format!("base_url: {e}"))?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(format!("base_url `{base_url}` is not an http(s) URL"));
        }
        Ok(())
    })();
    Provider {
        name: file.name.clone(),
        flag: file.flag.clone(),
        adapter: file.adapter.clone(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        tier: file.tier,
        limits: file.limits.clone(),
        timeouts: file.timeouts.clone(),
        quota: file.quota.clone(),
        options: file
            .adapter_options
            .as_ref()
            .map_or_else(|| "{}".to_owned(), |o| o.to_string()),
        local: file.local.clone().or_else(|| {
            file.models
                .iter()
                .any(|m| m.gpu.is_some())
                .then(LocalBackend::default)
        }),
        docs: file.docs.clone(),
        source: path.to_path_buf(),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const GROQ: &str = "name: groq\nflag: GROQ\nadapter: openai\nbase_url: https://api.groq.com/openai/v1\napi_key: ${GROQ_API_KEY}\ntier: free\nlimits: { rpm: 30 }\nmodels:\n  - alias: groq-llama\n    model: llama\n    mode: chat\n    limits: { rpd: 1000 }\n";
    const LOCAL: &str = "name: local\nflag: LOCAL\nadapter: openai\nbase_url: ${LOCAL_URL:-http://127.0.0.1:11434/v1}\ntier: local\nmodels:\n  - alias: local-llama\n    model: llama3\n    mode: chat\n  - alias: local-embed\n    model: bge\n    mode: embedding\n";

    fn load(dir: &Path, env: &[(&str, &str)]) -> Result<Catalog, ConfigError> {
        let bundled = |a: &str| {
            crate::plugins::bundled::BUNDLED
                .iter()
                .any(|(n, _)| *n == a)
        };
        Catalog::load(dir, &Env::from_pairs(env), &bundled)
    }

    #[test]
    fn flag_and_key_both_needed_to_enable() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "groq.yaml", GROQ);
        write(dir.path(), "local.yaml", LOCAL);
        let catalog = load(dir.path(), &[("GROQ", "1"), ("LOCAL", "1")]).unwrap();
        let groq = catalog.model("groq-llama").unwrap();
        assert!(!groq.enabled(), "flag without key must stay disabled");
        assert!(catalog.model("local-llama").unwrap().enabled());
        assert_eq!(
            catalog.model("local-llama").unwrap().provider.base_url,
            "http://127.0.0.1:11434/v1"
        );

        let catalog = load(dir.path(), &[("GROQ", "true"), ("GROQ_API_KEY", "k")]).unwrap();
        assert!(!catalog.model("groq-llama").unwrap().enabled());
        let catalog = load(dir.path(), &[("GROQ", "1"), ("GROQ_API_KEY", "k")]).unwrap();
        let groq = catalog.model("groq-llama").unwrap();
        assert!(groq.enabled());
        assert_eq!(groq.limits.rpd, Some(1000));
        assert_eq!(groq.provider.limits.rpm, Some(30));
        assert_eq!(format!("{:?}", groq.provider.api_key), "Some(Secret(***))");
    }

    #[test]
    fn candidates_follow_the_chain_and_skip_disabled() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "groq.yaml", GROQ);
        write(dir.path(), "local.yaml", LOCAL);
        write(
            dir.path(),
            FALLBACKS_FILE,
            "local-llama: [groq-llama]\ngroq-llama: [local-llama]\n",
        );
        let catalog = load(dir.path(), &[("LOCAL", "1")]).unwrap();
        let aliases = |a: &str| -> Vec<String> {
            catalog
                .candidates(a)
                .iter()
                .map(|m| m.alias.clone())
                .collect()
        };
        assert_eq!(aliases("local-llama"), vec!["local-llama"]);
        assert!(
            aliases("groq-llama").is_empty(),
            "a disabled alias is invisible"
        );
        assert!(aliases("nope").is_empty());
    }

    #[test]
    fn problems_name_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "groq.yaml",
            &GROQ.replace("    mode: chat", "    mode: chat\n    modle: x"),
        );
        write(
            dir.path(),
            "bad.yaml",
            &LOCAL
                .replace("adapter: openai", "adapter: nope")
                .replace("local-embed", "local-llama"),
        );
        write(
            dir.path(),
            "leak.yaml",
            &GROQ
                .replace("${GROQ_API_KEY}", "gsk_live_literal")
                .replace("name: groq", "name: leak")
                .replace("groq-llama", "leak-llama"),
        );
        write(
            dir.path(),
            FALLBACKS_FILE,
            "leak-llama: [missing, local-llama]\n",
        );
        let err = load(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("groq.yaml: models[0]: unknown field `modle`"),
            "{err}"
        );
        assert!(
            err.contains("bad.yaml: adapter: no plugin named `nope`"),
            "{err}"
        );
        assert!(
            err.contains("bad.yaml: models[1].alias: `local-llama` is already defined"),
            "{err}"
        );
        assert!(
            err.contains("leak.yaml: api_key: must be an environment reference"),
            "{err}"
        );
        assert!(!err.contains("gsk_live_literal"), "{err}");
        assert!(
            err.contains("fallbacks.yaml: leak-llama[0]: `missing` is not defined"),
            "{err}"
        );
    }

    #[test]
    fn quota_settings_and_limits_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "groq.yaml",
            &GROQ.replace(
                "limits: { rpm: 30 }",
                "limits: { rpm: 0, credit_usd: 0.5 }\nquota: { daily_reset: \"7am\", monthly_reset_day: 31 }",
            ),
        );
        let err = load(dir.path(), &[]).unwrap_err().to_string();
        for expected in [
            "groq.yaml: quota.daily_reset: `7am` is not a UTC time such as 00:00",
            "groq.yaml: quota.monthly_reset_day: must be a day from 1 to 28",
            "groq.yaml: limits: a limit of 0 would never allow a request",
            "groq.yaml: price: a credit_usd limit needs a price for every model",
        ] {
            assert!(err.contains(expected), "{expected} missing from:\n{err}");
        }
    }

    /// The catalogue shipped in `providers/` loads, covers the seed's
    /// providers, gives every chat alias a chain, and orders chains free first.
    #[test]
    fn shipped_catalogue_is_valid_and_free_first() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../providers");
        let catalog = load(&dir, &[]).unwrap();
        assert_eq!(catalog.providers.len(), 16);
        assert_eq!(catalog.models.len(), 120);
        let rank = |t: Tier| match t {
            Tier::Free => 0,
            Tier::Subscription => 1,
            Tier::Paid => 2,
            Tier::Local => 3,
        };
        for model in catalog.models.iter().filter(|m| m.mode == Mode::Chat) {
            let chain = catalog
                .fallbacks
                .get(&model.alias)
                .unwrap_or_else(|| panic!("{} has no fallback chain", model.alias));
            let tiers: Vec<u8> = chain
                .iter()
                .map(|a| rank(catalog.model(a).unwrap().tier))
                .collect();
            assert!(
                tiers.is_sorted(),
                "{}: chain is not free-first: {chain:?}",
                model.alias
            );
        }
        let groq = catalog.model("groq-llama-3.3-70b").unwrap();
        assert_eq!(
            (groq.limits.rpd, groq.limits.tpd),
            (Some(1000), Some(100_000))
        );
        assert_eq!(
            catalog.model("cerebras-llama-3.1-8b").unwrap().limits.rpm,
            Some(5)
        );
    }

    #[test]
    fn chains_may_not_mix_modes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "local.yaml", LOCAL);
        write(dir.path(), FALLBACKS_FILE, "local-llama: [local-embed]\n");
        let err = load(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            err.contains("`local-embed` serves embedding, but `local-llama` serves chat"),
            "{err}"
        );
    }
}
