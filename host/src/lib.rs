//! Tollgate: one OpenAI-compatible endpoint in front of many LLM providers,
//! free tiers first.
//!
//! The binary (`main.rs`) is a thin command line over these modules; they are
//! a library so benchmarks and simulations can drive the real router and
//! ledger with an injected clock.
//!
//! The modules, in the order a request meets them (each imports only those
//! below it; `docs/architecture.md` walks the flow):
//!
//! - [`state`]: the generation in service (catalogue, plugins, route table)
//!   and the hot reload that replaces it.
//! - [`http`]: the front door; endpoints parse and check a body, admin reads.
//! - [`route`]: one request across its candidates: the route table, the
//!   policy call, attempts, relaying the answer, local-backend control.
//! - [`upstream`]: every socket to a provider, and reading its answer.
//! - [`keys`]: gateway keys (who may ask for what, within which limits),
//!   found by the front door and enforced by the router.
//! - [`ledger`]: quota windows, reservations, cooldowns.
//! - [`gpu`]: the VRAM lease table and job slots of local backends.
//! - [`plugins`]: the WebAssembly sandbox for adapters and policies.
//! - [`config`]: fragments, environment, validation, the catalogue.
//! - [`api`], [`clock`], [`gauge`], [`lanes`], [`memory`], [`metrics`],
//!   [`redact`], [`store_file`]: shared below every stage (wire shapes,
//!   uploads and the body limit, time, the connection and in-flight counts,
//!   serving threads, the allocator, the process's counters, secret
//!   scrubbing, opening an embedded store that may be damaged).
//!
//! Beside the request path: [`import`] (moving in from a LiteLLM config),
//! [`author`] (`tollgate plugin`: templates, builds, checks and recorded
//! cases for plugin authors; it uses `plugins` and `upstream`) and
//! [`report`] (the tables the command line prints).

pub mod state;

pub mod http;

pub mod route;

pub mod upstream;

pub mod keys;

pub mod gpu;
pub mod ledger;
pub mod plugins;

pub mod author;
pub mod config;
pub mod import;
pub mod report;

/// The bodies of the fuzz targets in `host/fuzz`.
#[doc(hidden)]
pub mod fuzz;

pub mod api;
pub mod clock;
pub mod gauge;
pub mod lanes;
pub mod memory;
pub mod metrics;
pub mod redact;
pub mod store_file;
