//! {{name}}: a Tollgate adapter. As written it passes requests through to
//! an OpenAI-compatible API; the five places marked URL, AUTH, REQUEST,
//! RESPONSE and STREAM are where another provider's API differs.
//!
//! `tollgate plugin test` checks it against the cases in `tests/`, and
//! `tollgate plugin build` writes `dist/{{name}}.wasm` for a gateway's
//! `plugins/` folder. The SDK's guide walks through a provider of its own.

use tollgate_sdk::openai::{rewrite_request, usage_in};
use tollgate_sdk::prelude::*;

struct {{Type}};

impl Adapter for {{Type}} {
    // STREAM: `PassThrough` relays OpenAI-style server-sent events as they
    // come. For another event format, implement `EventTranslate` and name
    // `SseStream<YourTranslator>` here.
    type Stream = PassThrough;

    fn info() -> PluginInfo {
        plugin_info!("{{name}}", [Mode::Chat])
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        // URL: `target.base_url` is the provider fragment's `base_url`.
        let url = join_url(&target.base_url, "chat/completions");
        // REQUEST: the client's body with `model` set to the provider's own
        // id; every other field goes out as the client wrote it.
        let body = rewrite_request(&request.body, &target.model, false)?;
        let mut upstream = json_post(url, body, response_kind(request));
        // AUTH: where the host puts the provider's key (the plugin never sees
        // it): Bearer, Header("x-api-key".into()), Query("key".into()) or None.
        upstream.credential = Credential::Bearer;
        Ok(upstream)
    }

    fn translate_response(
        _target: &Target,
        _request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        // RESPONSE: already in OpenAI's shape. The usage feeds the gateway's
        // token ledgers.
        let usage = usage_in(&response.body).map(Usage::from);
        Ok(json_reply(response.body, usage))
    }

    fn open_stream(_target: &Target, _request: &ClientRequest) -> PassThrough {
        PassThrough::default()
    }

    // Failures: `classify_failure` reads statuses the way OpenAI-style APIs
    // mean them (429 rate limited, 402 out of credit, 5xx server); override
    // it when the provider says so differently.
}

export_adapter!({{Type}});
