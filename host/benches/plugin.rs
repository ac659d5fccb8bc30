//! What one request costs in the plugin sandbox, with no network: a fresh
//! instance of the bundled OpenAI adapter, `build-request`, then
//! `translate-response`, then the instance dropped. Run with
//! `cargo bench -p tollgate --bench plugin`; `PLUGINS=dir` measures the
//! `openai.wasm` in that folder instead (a plugin author's own build).

use std::time::Instant;
use tollgate::plugins::PluginRuntime;
use tollgate::plugins::bindings::{ClientRequest, Mode, Target, UpstreamResponse};
use tollgate::plugins::engine::Limits;

mod common;
use common::{COMPLETION, REQUEST};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limits = Limits {
            spare_instances: std::env::var("SPARES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            ..Limits::default()
        };
        let dir = std::env::var_os("PLUGINS").map(std::path::PathBuf::from);
        let plugins = PluginRuntime::load(limits, dir.as_deref(), None)
            .await
            .unwrap();
        if let Some(f) = plugins.failures().first() {
            panic!("{} failed to load: {}", f.name, f.error);
        }
        let adapter = plugins.adapter("openai").unwrap().clone();
        let target = Target {
            provider: "bench".into(),
            alias: "bench-chat".into(),
            model: "m".into(),
            base_url: "http://127.0.0.1:1/v1".into(),
            mode: Mode::Chat,
            options: "{}".into(),
        };
        let request = ClientRequest {
            mode: Mode::Chat,
            body: REQUEST.into(),
            stream: false,
            uploads: Vec::new(),
        };
        let response = UpstreamResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: COMPLETION.as_bytes().to_vec(),
        };
        let n = 20_000;
        for round in 0..3 {
            let t = Instant::now();
            for _ in 0..n {
                drop(plugins.session(&adapter).await.unwrap());
            }
            let instantiate = t.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
            let t = Instant::now();
            for _ in 0..n {
                let mut session = plugins.session(&adapter).await.unwrap();
                session.build_request(&target, &request).await.unwrap().unwrap();
                session
                    .translate_response(&target, &request, &response)
                    .await
                    .unwrap()
                    .unwrap();
            }
            let whole = t.elapsed().as_nanos() as f64 / n as f64 / 1000.0;
            println!(
                "round {round}: instantiate+drop {instantiate:.1} µs; with build+translate {whole:.1} µs"
            );
        }
    });
}
