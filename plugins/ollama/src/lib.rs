//! The adapter for Ollama: inference through its OpenAI-compatible `/v1`,
//! and, to share the GPU, unloading what it holds.
//!
//! Unloading lists the resident models (`GET /api/ps`) and asks Ollama to
//! drop the first (`POST /api/generate {"model", "keep_alive": 0}`), then
//! lists again, until nothing is resident. The plugin keeps no state between
//! calls, so the list is read afresh each round; models loaded outside
//! Tollgate are unloaded too, since they hold the same memory. Ollama loads a
//! model by itself on its first request: loading needs no call.

#![cfg_attr(not(test), no_std)]

use serde::Deserialize;
use tollgate_sdk::compat::{Local, LocalBackend, backend_root, control_call, expect_success};
use tollgate_sdk::prelude::*;

/// More rounds than this means a model refuses to unload.
const MAX_ROUNDS: u32 = 32;

struct Ollama;

#[derive(Deserialize)]
struct Ps {
    #[serde(default)]
    models: Vec<Resident>,
}

#[derive(Deserialize)]
struct Resident {
    name: String,
}

impl LocalBackend for Ollama {
    fn info() -> PluginInfo {
        plugin_info("ollama", &[Mode::Chat, Mode::Embedding])
    }

    fn control(
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        if action == ControlAction::Load {
            return Ok(ControlStep::Done);
        }
        let root = backend_root(target);
        if step >= 2 * MAX_ROUNDS {
            return Err(format!(
                "Ollama still lists models after {MAX_ROUNDS} unloads"
            ));
        }
        match (step % 2, previous) {
            // Even steps list what is resident (after the last unload, if any).
            (0, previous) => {
                if let Some(unloaded) = previous {
                    expect_success("unloading a model", &unloaded)?;
                }
                let url = format!("{root}/api/ps");
                Ok(ControlStep::Call(control_call("GET", url, None)))
            }
            (_, Some(listed)) => {
                expect_success("GET /api/ps", &listed)?;
                let ps: Ps = serde_json::from_slice(&listed.body)
                    .map_err(|e| format!("unreadable /api/ps: {e}"))?;
                let Some(first) = ps.models.first() else {
                    return Ok(ControlStep::Done);
                };
                let body = serde_json::json!({"model": first.name, "keep_alive": 0});
                let url = format!("{root}/api/generate");
                Ok(ControlStep::Call(control_call("POST", url, Some(body))))
            }
            (_, None) => Err("the host sent no /api/ps answer".into()),
        }
    }
}

export_adapter!(Local<Ollama>);

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            provider: "ollama-cuda".into(),
            alias: "q".into(),
            model: "qwen3:8b".into(),
            base_url: "http://127.0.0.1:11435/v1".into(),
            mode: Mode::Chat,
            options: "{}".into(),
        }
    }

    fn answer(body: &str) -> Option<UpstreamResponse> {
        Some(UpstreamResponse {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn call(step: ControlStep) -> UpstreamRequest {
        match step {
            ControlStep::Call(request) => request,
            ControlStep::Done => panic!("expected a call"),
        }
    }

    #[test]
    fn unloading_lists_then_drops_each_model_until_none_is_left() {
        let unload =
            |step, previous| Ollama::control(&target(), ControlAction::Unload, step, previous);
        let list = call(unload(0, None).unwrap());
        assert_eq!(
            (list.method.as_str(), list.url.as_str()),
            ("GET", "http://127.0.0.1:11435/api/ps")
        );
        let drop = call(
            unload(
                1,
                answer(r#"{"models":[{"name":"qwen3:8b"},{"name":"bge-m3"}]}"#),
            )
            .unwrap(),
        );
        assert_eq!(drop.url, "http://127.0.0.1:11435/api/generate");
        let Body::Bytes(body) = &drop.body else {
            panic!()
        };
        assert_eq!(
            String::from_utf8_lossy(body),
            r#"{"keep_alive":0,"model":"qwen3:8b"}"#
        );
        let again = call(unload(2, answer("{}")).unwrap());
        assert_eq!(again.url, list.url);
        assert!(matches!(
            unload(3, answer(r#"{"models":[]}"#)).unwrap(),
            ControlStep::Done
        ));
        assert!(unload(2 * MAX_ROUNDS, answer("{}")).is_err());
        assert!(matches!(
            Ollama::control(&target(), ControlAction::Load, 0, None).unwrap(),
            ControlStep::Done
        ));
    }
}
