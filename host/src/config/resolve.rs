//! Fragments resolved against the environment: a provider is enabled only
//! when its flag is exactly `1` and its key reference resolves, and its
//! `base_url` has `${VAR:-default}` expanded. Keys are held as [`Secret`]s,
//! which never print.

use super::env::Env;
use super::fragment::{
    Feature, Gpu, Limits, LocalBackend, Mode, Price, ProviderFile, Quota, Tier, Timeouts,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// `${NAME}` → `NAME`.
pub(super) fn key_reference(text: &str) -> Option<&str> {
    let name = text.strip_prefix("${")?.strip_suffix('}')?;
    super::env::is_variable_name(name).then_some(name)
}

pub(super) fn resolve_provider(file: &ProviderFile, path: &Path, env: &Env) -> Provider {
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
