//! # tollgate-sdk
//!
//! Write a Tollgate provider adapter or routing policy as a WebAssembly
//! component in a page of Rust. Implement [`Adapter`] and call
//! [`export_adapter!`] (or [`policy::Policy`] and [`export_policy!`](crate::export_policy)), build
//! with `cargo build --target wasm32-wasip2 --release`, and drop the `.wasm`
//! into the gateway's `plugins/` folder.
//!
//! ```ignore
//! use tollgate_sdk::prelude::*;
//!
//! struct Echo;
//!
//! impl Adapter for Echo {
//!     type Stream = PassThrough;
//!     fn info() -> PluginInfo { plugin_info("echo", &[Mode::Chat]) }
//!     fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
//!         let url = join_url(&target.base_url, "chat/completions");
//!         Ok(json_post(url, request.body.clone().into_bytes(), ResponseKind::Json))
//!     }
//!     fn translate_response(_: &Target, _: &ClientRequest, response: UpstreamResponse) -> Result<Reply, String> {
//!         Ok(json_reply(response.body, None))
//!     }
//!     fn open_stream(_: &Target, _: &ClientRequest) -> PassThrough { PassThrough::default() }
//! }
//!
//! export_adapter!(Echo);
//! ```
//!
//! The contract itself, with every type documented, is `wit/tollgate.wit`.
//!
//! With the default `std` feature a plugin may use the whole standard
//! library. Built with `default-features = false` and `#![no_std]`, the SDK
//! supplies the allocator and the panic handler itself (`no_std.rs`), the
//! component imports no WASI at all, and the gateway calls it on the serving
//! thread's own stack: a cheaper instance for every request.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod compat;
pub mod http;
mod no_std;
pub mod openai;
pub mod policy;
pub mod sse;

use alloc_prelude::*;
use core::cell::RefCell;
use core::marker::PhantomData;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "native-adapter-plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "tollgate_sdk::bindings",
    });
}

/// The WIT types, under their contract names.
pub mod types {
    pub use crate::bindings::tollgate::plugin::types::*;
}

/// The `alloc` items the standard prelude would bring, so that a `no_std`
/// plugin reads like any other.
pub mod alloc_prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// Everything a typical adapter uses.
pub mod prelude {
    pub use crate::alloc_prelude::*;
    pub use crate::http::{classify, header, join_url, json_post, response_kind};
    pub use crate::sse::{SseEvent, SseParser};
    pub use crate::types::*;
    pub use crate::{
        Adapter, EventTranslate, PassThrough, SseStream, StreamTranslate, export_adapter,
        json_reply, log, options, plugin_info,
    };
}

use types::{
    ClientRequest, ControlAction, ControlStep, Failure, Mode, PluginInfo, Reply, StreamOutput,
    Target, UpstreamRequest, UpstreamResponse, Usage,
};

/// A provider adapter. Each method is one step of an attempt; see the WIT
/// file's `adapter` interface for when the host calls which.
///
/// Methods take no `self`: the host gives every request a fresh instance, so
/// there is no state to keep between calls.
pub trait Adapter: 'static {
    /// Translates one upstream event stream.
    type Stream: StreamTranslate;

    fn info() -> PluginInfo;

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String>;

    fn translate_response(
        target: &Target,
        request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String>;

    /// Defaults to how OpenAI-style APIs report failures.
    fn classify_failure(_target: &Target, response: &UpstreamResponse) -> Failure {
        http::classify(response)
    }

    fn open_stream(target: &Target, request: &ClientRequest) -> Self::Stream;

    /// The client protocols this adapter takes as they are, because its
    /// provider speaks them (`anthropic-messages`); see the WIT file's
    /// `native` interface. Defaults to none: the host sends OpenAI chat.
    fn native_protocols() -> Vec<String> {
        Vec::new()
    }

    /// The upstream request for a client request in one of
    /// [`Adapter::native_protocols`], its body as the client sent it.
    fn build_native_request(
        _target: &Target,
        protocol: &str,
        _headers: &[(String, String)],
        _body: &str,
        _stream: bool,
    ) -> Result<UpstreamRequest, String> {
        Err(format!("this adapter does not take `{protocol}` as it is"))
    }

    /// Loading and unloading models on a local backend. Defaults to nothing to do.
    fn control(
        _target: &Target,
        _action: ControlAction,
        _step: u32,
        _previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        Ok(ControlStep::Done)
    }
}

/// One upstream stream's translation state.
pub trait StreamTranslate: 'static {
    /// Bytes as they came off the wire.
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, String>;
    /// The upstream closed the stream.
    fn finish(&mut self) -> Result<StreamOutput, String>;
}

/// A stream translator that works on whole server-sent events: wrap it in
/// [`SseStream`], which splits the bytes into events for it.
pub trait EventTranslate: 'static {
    /// Translates the events one read of the wire completed (possibly none).
    fn events(&mut self, events: Vec<sse::SseEvent>) -> Result<StreamOutput, String>;
}

/// Feeds an [`EventTranslate`] whole events, however the bytes arrive.
pub struct SseStream<T> {
    parser: sse::SseParser,
    inner: T,
}

impl<T> SseStream<T> {
    pub fn new(inner: T) -> Self {
        SseStream {
            parser: sse::SseParser::new(),
            inner,
        }
    }
}

impl<T: EventTranslate> StreamTranslate for SseStream<T> {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, String> {
        let events = self.parser.push(bytes);
        self.inner.events(events)
    }

    fn finish(&mut self) -> Result<StreamOutput, String> {
        let events = self.parser.finish().into_iter().collect();
        self.inner.events(events)
    }
}

/// The fragment's `adapter_options`, read into the plugin's own type; the
/// error names the provider, for `tollgate check` and the client's 400.
pub fn options<T: serde::de::DeserializeOwned>(target: &Target) -> Result<T, String> {
    serde_json::from_str(&target.options)
        .map_err(|e| format!("adapter_options of {}: {e}", target.provider))
}

/// A translator for upstreams that already speak OpenAI's stream format.
#[derive(Debug, Default)]
pub struct PassThrough {
    parser: SseParserState,
}

type SseParserState = sse::SseParser;

impl PassThrough {
    fn output(events: Vec<sse::SseEvent>) -> StreamOutput {
        let mut out = empty_output();
        for event in events {
            if event.data == "[DONE]" {
                out.done = true;
            } else if !event.data.is_empty() {
                out.chunks.push(event.data);
            }
        }
        out
    }
}

impl StreamTranslate for PassThrough {
    fn push(&mut self, bytes: &[u8]) -> Result<StreamOutput, String> {
        Ok(Self::output(self.parser.push(bytes)))
    }

    fn finish(&mut self) -> Result<StreamOutput, String> {
        Ok(Self::output(self.parser.finish().into_iter().collect()))
    }
}

/// A [`StreamOutput`] with nothing in it yet.
pub fn empty_output() -> StreamOutput {
    StreamOutput {
        chunks: Vec::new(),
        usage: None,
        done: false,
    }
}

/// A JSON success reply.
pub fn json_reply(body: Vec<u8>, usage: Option<Usage>) -> Reply {
    Reply {
        content_type: "application/json".to_owned(),
        body,
        usage,
    }
}

/// [`PluginInfo`] with the SDK's version: what the bundled plugins, which
/// share it, use. A plugin of your own wants [`plugin_info!`], which gives
/// your crate's version.
pub fn plugin_info(name: &str, modes: &[Mode]) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        modes: modes.to_vec(),
    }
}

/// [`PluginInfo`] with the version in the calling crate's `Cargo.toml`:
/// `plugin_info!("acme", [Mode::Chat])`. `/admin/plugins` and
/// `tollgate plugin check` show that version.
#[macro_export]
macro_rules! plugin_info {
    ($name:expr, [$($mode:expr),* $(,)?]) => {
        $crate::types::PluginInfo {
            name: $crate::alloc_prelude::ToOwned::to_owned($name),
            version: $crate::alloc_prelude::ToOwned::to_owned(env!("CARGO_PKG_VERSION")),
            modes: $crate::alloc_prelude::vec![$($mode),*],
        }
    };
}

/// Writes to the gateway's log.
pub fn log(level: bindings::tollgate::plugin::host::LogLevel, message: &str) {
    bindings::tollgate::plugin::host::log(level, message);
}

impl From<openai::Usage> for Usage {
    fn from(u: openai::Usage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

/// Bridges an [`Adapter`] to the generated WIT exports. Used by [`export_adapter!`].
#[doc(hidden)]
pub struct Export<A>(PhantomData<A>);

#[doc(hidden)]
pub struct ExportTranslator<A: Adapter>(RefCell<A::Stream>);

use bindings::exports::tollgate::plugin::adapter as wit_adapter;

impl<A: Adapter> wit_adapter::Guest for Export<A> {
    type Translator = ExportTranslator<A>;

    fn info() -> PluginInfo {
        A::info()
    }

    fn build_request(target: Target, request: ClientRequest) -> Result<UpstreamRequest, String> {
        A::build_request(&target, &request)
    }

    fn translate_response(
        target: Target,
        request: ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        A::translate_response(&target, &request, response)
    }

    fn classify_failure(target: Target, response: UpstreamResponse) -> Failure {
        A::classify_failure(&target, &response)
    }

    fn control(
        target: Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        A::control(&target, action, step, previous)
    }
}

impl<A: Adapter> bindings::exports::tollgate::plugin::native::Guest for Export<A> {
    fn protocols() -> Vec<String> {
        A::native_protocols()
    }

    fn build_native_request(
        target: Target,
        protocol: String,
        headers: Vec<(String, String)>,
        body: String,
        stream: bool,
    ) -> Result<UpstreamRequest, String> {
        A::build_native_request(&target, &protocol, &headers, &body, stream)
    }
}

impl<A: Adapter> wit_adapter::GuestTranslator for ExportTranslator<A> {
    fn new(target: Target, request: ClientRequest) -> Self {
        ExportTranslator(RefCell::new(A::open_stream(&target, &request)))
    }

    fn push(&self, bytes: Vec<u8>) -> Result<StreamOutput, String> {
        self.0.borrow_mut().push(&bytes)
    }

    fn finish(&self) -> Result<StreamOutput, String> {
        self.0.borrow_mut().finish()
    }
}

/// Exports an [`Adapter`] as this component's implementation of the
/// `tollgate:plugin/adapter` interface. Call it once, at the crate root.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[cfg(target_family = "wasm")]
        type __TollgateExport = $crate::Export<$adapter>;
        // Only a component exports the contract; built for the machine (as
        // `cargo build --workspace` does) a plugin is a library that
        // exports nothing the native linker would refuse.
        #[cfg(target_family = "wasm")]
        $crate::bindings::export_raw!(__TollgateExport with_types_in $crate::bindings);
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __tollgate_adapter_info() -> $crate::bindings::exports::tollgate::plugin::adapter::PluginInfo {
            <$adapter as $crate::Adapter>::info()
        }
    };
}
