//! End-to-end tests: the real `tollgate` binary, real HTTP, and mock
//! upstreams that speak OpenAI's wire format and misbehave on request.

mod support {
    pub mod gateway;
    pub mod mock;
}

mod access;
mod chat;
mod cli;
mod fallback;
mod openai_client;
mod policy;
mod quotas;
mod reload;
mod sandbox;
mod streaming;
