//! The front door: the listener and its routes ([`server`]), the OpenAI
//! endpoints that parse and check a body before anything is reserved
//! ([`endpoints`], [`validate`]), one module per other inbound protocol,
//! each converting to and from the chat request the router serves
//! ([`messages`] for Anthropic, [`responses`] for OpenAI Responses, both
//! re-framing streams through [`events`]), and the operator's read-only
//! views: JSON ([`admin`]), Prometheus ([`metrics`]) and the page that
//! draws them ([`dashboard`]).

pub mod access;
pub mod admin;
pub mod admin_keys;
pub mod dashboard;
pub mod endpoints;
pub mod events;
pub mod inbound;
pub mod messages;
pub mod metrics;
pub mod responses;
pub mod server;
pub mod validate;
