//! The adapter for the sd.cpp image server: images through its
//! OpenAI-compatible `/v1`; before each job the model is loaded
//! (`POST /sdcpp/v1/load?model=…`, the server swaps models itself), and to
//! share the GPU it is unloaded (`POST /sdcpp/v1/unload`). The server runs
//! one job at a time: its fragment sets `concurrency: 1`, so the gateway
//! never sends it a second job (which it would answer with 503).

#![cfg_attr(not(test), no_std)]

use tollgate_sdk::compat::{Local, LocalBackend, backend_root, control_call, expect_success};
use tollgate_sdk::prelude::*;

struct Sdcpp;

/// `model` as a query-string value.
fn query_value(model: &str) -> String {
    model
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl LocalBackend for Sdcpp {
    fn info() -> PluginInfo {
        plugin_info("sdcpp", &[Mode::Image])
    }

    fn control(
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        let root = backend_root(target);
        if let Some(answer) = previous {
            expect_success("sd.cpp", &answer)?;
            return Ok(ControlStep::Done);
        }
        if step > 0 {
            return Err("the host sent no answer".into());
        }
        let url = match action {
            ControlAction::Load => {
                format!("{root}/sdcpp/v1/load?model={}", query_value(&target.model))
            }
            ControlAction::Unload => format!("{root}/sdcpp/v1/unload"),
        };
        Ok(ControlStep::Call(control_call("POST", url, None)))
    }
}

export_adapter!(Local<Sdcpp>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_names_the_model_and_unload_frees_the_server() {
        let target = Target {
            provider: "sdcpp-cuda".into(),
            alias: "i".into(),
            model: "flux schnell".into(),
            base_url: "http://127.0.0.1:8401/v1/".into(),
            mode: Mode::Image,
            options: "{}".into(),
        };
        let url = |action| match Sdcpp::control(&target, action, 0, None).unwrap() {
            ControlStep::Call(call) => call.url,
            ControlStep::Done => panic!("expected a call"),
        };
        assert_eq!(
            url(ControlAction::Load),
            "http://127.0.0.1:8401/sdcpp/v1/load?model=flux%20schnell"
        );
        assert_eq!(
            url(ControlAction::Unload),
            "http://127.0.0.1:8401/sdcpp/v1/unload"
        );
        let busy = UpstreamResponse {
            status: 503,
            headers: Vec::new(),
            body: b"busy".to_vec(),
        };
        assert!(Sdcpp::control(&target, ControlAction::Load, 1, Some(busy)).is_err());
    }
}
