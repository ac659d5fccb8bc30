//! The front door: the listener and its routes ([`server`]), the OpenAI
//! endpoints that parse and check a body before anything is reserved
//! ([`endpoints`], [`validate`]), and the operator's read-only views
//! ([`admin`]).

pub mod admin;
pub mod endpoints;
pub mod server;
pub mod validate;
