//! `GET /v1/audio/voices`: the voices a speech backend offers (talkies
//! lists its Kokoro voices), passed through as the backend gives them.

use crate::api::{ApiError, Body, json_response};
use crate::config::{Mode, Model};
use crate::route::{Gateway, PROVIDER_HEADER};
use crate::upstream::{self, Pace};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

impl Gateway {
    /// `GET /v1/audio/voices`: the voice list of a speech model's backend,
    /// as the backend gives it. Without an alias, the first enabled speech
    /// model's backend answers.
    pub async fn voices(&self, alias: Option<&str>) -> Response<Body> {
        let model = match alias {
            Some(alias) => match self.catalog.model(alias).filter(|m| m.enabled()) {
                None => return ApiError::model_not_found(alias).into_response(),
                Some(m) if m.mode != Mode::Speech => {
                    return ApiError::bad_request(format!(
                        "the model `{alias}` serves {}, not speech",
                        m.mode.as_str()
                    ))
                    .into_response();
                }
                Some(m) => m,
            },
            None => match self
                .catalog
                .models
                .iter()
                .find(|m| m.enabled() && m.mode == Mode::Speech)
            {
                Some(m) => m,
                None => {
                    return ApiError::bad_request(
                        "no speech model is enabled; GET /v1/models lists the models you can use",
                    )
                    .into_response();
                }
            },
        };
        let url = format!("{}/audio/voices", model.provider.base_url);
        let response = match self.upstreams.get(&model.provider, &url).await {
            Ok(response) => response,
            Err(e) => return voices_unavailable(model, &self.redactor.scrub(&e.to_string())),
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "voices_not_listed",
                format!(
                    "the backend of `{}` ({}) does not list its voices",
                    model.alias, model.provider.name
                ),
            )
            .into_response();
        }
        let answer = upstream::read_response(response, Pace::new(&model.provider.timeouts)).await;
        let content_type = answer
            .header(CONTENT_TYPE.as_str())
            .and_then(|v| HeaderValue::from_str(v).ok());
        match answer.whole() {
            Ok(answer) if status.is_success() => {
                let mut out = json_response(StatusCode::OK, answer.body);
                if let Some(content_type) = content_type {
                    out.headers_mut().insert(CONTENT_TYPE, content_type);
                }
                if let Ok(alias) = HeaderValue::from_str(&model.alias) {
                    out.headers_mut().insert(PROVIDER_HEADER, alias);
                }
                out
            }
            Ok(_) => voices_unavailable(model, &format!("HTTP {status}")),
            Err(e) => voices_unavailable(model, &e.to_string()),
        }
    }
}

fn voices_unavailable(model: &Model, reason: &str) -> Response<Body> {
    ApiError::bad_gateway(
        "voices_unavailable",
        format!(
            "the backend of `{}` ({}) could not list its voices: {reason}",
            model.alias, model.provider.name
        ),
    )
    .into_response()
}
