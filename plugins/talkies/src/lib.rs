//! The adapter for talkies (psyb0t/talkies): transcription and speech
//! through its OpenAI-compatible `/v1`, and, to share the GPU, unloading a
//! model with `DELETE /api/ps/{model}`. talkies loads a model by itself on
//! its first request: loading needs no call.

#![cfg_attr(not(test), no_std)]

use tollgate_sdk::compat::{Local, LocalBackend, backend_root, control_call, expect_success};
use tollgate_sdk::prelude::*;

struct Talkies;

impl LocalBackend for Talkies {
    fn info() -> PluginInfo {
        plugin_info("talkies", &[Mode::Transcription, Mode::Speech])
    }

    fn control(
        target: &Target,
        action: ControlAction,
        step: u32,
        previous: Option<UpstreamResponse>,
    ) -> Result<ControlStep, String> {
        match (action, step, previous) {
            (ControlAction::Load, _, _) => Ok(ControlStep::Done),
            (ControlAction::Unload, 0, _) => {
                let url = format!("{}/api/ps/{}", backend_root(target), target.model);
                Ok(ControlStep::Call(control_call("DELETE", url, None)))
            }
            // Not loaded is as good as unloaded.
            (ControlAction::Unload, _, Some(answer)) if answer.status == 404 => {
                Ok(ControlStep::Done)
            }
            (ControlAction::Unload, _, Some(answer)) => {
                expect_success("DELETE /api/ps", &answer)?;
                Ok(ControlStep::Done)
            }
            (ControlAction::Unload, _, None) => Err("the host sent no answer".into()),
        }
    }
}

export_adapter!(Local<Talkies>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unloading_deletes_the_model_from_the_backend_root() {
        let target = Target {
            provider: "talkies-cuda".into(),
            alias: "w".into(),
            model: "Systran/faster-whisper-large-v3".into(),
            base_url: "http://127.0.0.1:8301/v1".into(),
            mode: Mode::Transcription,
            options: "{}".into(),
        };
        let ControlStep::Call(call) =
            Talkies::control(&target, ControlAction::Unload, 0, None).unwrap()
        else {
            panic!("expected a call")
        };
        assert_eq!(call.method, "DELETE");
        assert_eq!(
            call.url,
            "http://127.0.0.1:8301/api/ps/Systran/faster-whisper-large-v3"
        );
        let answer = |status| UpstreamResponse {
            status,
            headers: Vec::new(),
            body: b"{\"detail\":\"boom\"}".to_vec(),
        };
        let done = Talkies::control(&target, ControlAction::Unload, 1, Some(answer(404)));
        assert!(matches!(done.unwrap(), ControlStep::Done));
        let failed = Talkies::control(&target, ControlAction::Unload, 1, Some(answer(500)));
        assert!(failed.unwrap_err().contains("boom"));
    }
}
