//! Tollgate: one OpenAI-compatible endpoint in front of many LLM providers,
//! free tiers first.
//!
//! The binary (`main.rs`) is a thin command line over these modules; they are
//! a library so benchmarks and simulations can drive the real router and
//! ledger with an injected clock.

pub mod admin;
pub mod api;
mod backends;
pub mod config;
pub mod endpoints;
pub mod env;
pub mod gpu;
pub mod lanes;
pub mod ledger;
pub mod memory;
pub mod plugins;
pub mod policy;
pub mod redact;
mod relay;
pub mod reload;
pub mod report;
pub mod router;
pub mod server;
pub mod uploads;
pub mod upstream;
pub mod validate;
mod voices;
