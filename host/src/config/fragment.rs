//! Fragments as written: `providers/*.yaml`, the types their fields parse
//! into, and finding them in the config folder. Unknown fields are refused
//! here (`deny_unknown_fields`), so a typo is a problem, not a default.

use super::{FALLBACKS_FILE, KEYS_FILE, POLICIES_FILE};
use serde::Deserialize;
use std::path::{Path, PathBuf};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
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
    /// From the response headers to the body's end: a stream that trickles
    /// on holds its slot, reservation and lease no longer than this.
    pub total: f64,
    /// The most a body may carry, in MiB: a stream's cap (a body read
    /// whole stops at 64 MiB in any case).
    pub max_mib: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 10.0,
            response: 300.0,
            idle: 120.0,
            total: 1800.0,
            max_mib: 256.0,
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
    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.total)
    }
    pub fn max_bytes(&self) -> u64 {
        (self.max_mib * (1u64 << 20) as f64) as u64
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
        crate::clock::parse_time_of_day(&self.daily_reset).unwrap_or(0)
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
pub(super) struct ProviderFile {
    pub(super) name: String,
    pub(super) flag: String,
    pub(super) adapter: String,
    pub(super) base_url: String,
    #[serde(default)]
    pub(super) api_key: Option<String>,
    pub(super) tier: Tier,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) timeouts: Timeouts,
    #[serde(default)]
    pub(super) quota: Quota,
    /// Default price of the provider's models, for a `credit_usd` limit.
    #[serde(default)]
    pub(super) price: Option<Price>,
    #[serde(default)]
    pub(super) adapter_options: Option<serde_json::Value>,
    /// Request fields every model of the provider refuses.
    #[serde(default)]
    pub(super) unsupported: Vec<Feature>,
    /// Set for a local model server shared through the lease table.
    #[serde(default)]
    pub(super) local: Option<LocalBackend>,
    /// Where the provider publishes its limits; for people, not the gateway.
    #[serde(default)]
    pub(super) docs: Option<String>,
    pub(super) models: Vec<ModelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFile {
    pub(super) alias: String,
    pub(super) model: String,
    pub(super) mode: Mode,
    #[serde(default)]
    pub(super) tier: Option<Tier>,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) price: Option<Price>,
    #[serde(default)]
    pub(super) gpu: Option<Gpu>,
    /// Request fields this model refuses, beside the provider's.
    #[serde(default)]
    pub(super) unsupported: Vec<Feature>,
    #[serde(default)]
    pub(super) notes: Option<String>,
}

/// `*.yaml` / `*.yml` files in `dir` except the fallbacks and policies
/// files, sorted.
pub(super) fn fragment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let yaml = path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            let special = path
                .file_name()
                .is_some_and(|n| n == FALLBACKS_FILE || n == POLICIES_FILE || n == KEYS_FILE);
            yaml && !special
        })
        .collect();
    files.sort();
    Ok(files)
}
