//! End-to-end tests: the real `tollgate` binary, real HTTP, and mock
//! upstreams that speak OpenAI's wire format and misbehave on request.

mod support {
    pub mod fixtures;
    pub mod gateway;
    pub mod local;
    pub mod mock;
    pub mod python;
    pub mod scripted;
}

mod access;
mod agents;
mod author;

mod anthropic;
mod chat;
mod cli;
mod cohere;
mod fallback;
mod faults;
mod gpu;
mod idle;
mod import;
mod inbound;
mod keys;
mod modes;
mod observe;
mod openai_client;
mod policy;
mod quotas;
mod reload;
mod sandbox;
mod streaming;
mod validation;
