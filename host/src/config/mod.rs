//! The configuration, by concern: [`fragment`] (the YAML as written and
//! the types it parses into), [`env`] (the environment and `.env` that
//! flags and keys come from), [`resolve`] (a fragment made a provider
//! against that environment), [`problems`] (validation, each problem naming
//! its file and field) and [`catalog`] (everything loaded and checked
//! together). `docs/configuration.md` lists every field.

pub mod catalog;
pub mod env;
pub mod fragment;
pub mod problems;
pub mod resolve;

pub use catalog::{Catalog, DEFAULT_POLICY, FALLBACKS_FILE, KEYS_FILE, POLICIES_FILE, Policies};
pub use fragment::{
    Feature, Gpu, Limits, LocalBackend, Mode, Price, Quota, Tier, Timeouts, WindowStyle,
};
pub use problems::{ConfigError, Problem};
pub use resolve::{Model, Provider, Secret};

#[cfg(test)]
mod tests;
