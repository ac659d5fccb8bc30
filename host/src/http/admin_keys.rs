//! `/admin/keys`: the gateway keys, their limits and what each has used
//! this month; making one (`POST`, the secret shown once) and revoking one
//! (`DELETE /admin/keys/{name}`). No secret or hash is ever in an answer.

use crate::api::{ApiError, Body, json_response};
use crate::clock::rfc3339;
use crate::http::endpoints::read_body;
use crate::keys::spec::KeySpec;
use crate::keys::{GatewayKey, KeysError};
use crate::ledger::keyed::KEY_SCOPE_PREFIX;
use crate::ledger::report::Row;
use crate::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

/// Every key, from `keys.yaml` and from the API.
pub async fn list(state: &AppState) -> Response<Body> {
    let ring = state.keys.ring();
    let report = state
        .keys
        .ledger()
        .report_of(|scope| scope.provider.starts_with(KEY_SCOPE_PREFIX))
        .await;
    let keys: Vec<Value> = ring
        .keys()
        .iter()
        .map(|key| {
            let prefix = format!("{KEY_SCOPE_PREFIX}{}", key.name());
            let rows: Vec<&Row> = report
                .quotas
                .iter()
                .filter(|r| r.provider == prefix)
                .collect();
            describe(key, &rows)
        })
        .collect();
    let mut body = json!({"backend": report.backend, "now": report.now, "keys": keys});
    if let Some(error) = report.error {
        body["error"] = Value::String(error);
    }
    json_response(StatusCode::OK, body.to_string())
}

/// A key as listed: its spec, then its month's usage and what remains of
/// each limit.
fn describe(key: &GatewayKey, rows: &[&Row]) -> Value {
    let mut out = match serde_json::to_value(&key.spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    out.insert("source".into(), key.source.as_str().into());
    if let Some(at) = key.expires_at {
        out.insert("expires_at".into(), rfc3339(at).into());
    }
    let used = |window: &str| {
        rows.iter()
            .find(|r| r.window == window)
            .and_then(|r| r.used)
            .unwrap_or(0.0)
    };
    out.insert(
        "usage".into(),
        json!({
            "requests": used("rpmonth") as u64,
            "tokens": used("tpmonth") as u64,
            "spend_usd": used("credit_usd"),
        }),
    );
    let mut remaining = Map::new();
    let mut resets = Map::new();
    for row in rows {
        let name = if row.window == "credit_usd" {
            "budget_usd"
        } else {
            row.window.as_str()
        };
        let limited = matches!(name, "rpm" | "rpd" | "tpm" | "tpd")
            || (name == "budget_usd" && key.spec.budget_usd.is_some());
        if !limited {
            continue;
        }
        if let Some(left) = row.remaining {
            let left = if name == "budget_usd" {
                left.into()
            } else {
                Value::from(left as u64)
            };
            remaining.insert(name.into(), left);
        }
        if let Some(at) = &row.resets_at {
            resets.insert(name.into(), at.clone().into());
        }
    }
    out.insert("remaining".into(), remaining.into());
    out.insert("resets_at".into(), resets.into());
    Value::Object(out)
}

/// `POST /admin/keys`: makes a key and answers its secret, once.
pub async fn add(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let spec: KeySpec = match serde_json::from_slice::<Value>(&body) {
        Ok(value) if value.get("key").is_some() || value.get("key_sha256").is_some() => {
            return ApiError::bad_request(
                "the gateway makes the secret: leave out `key` (or write the key into keys.yaml)",
            )
            .into_response();
        }
        Ok(value) => match serde_json::from_value(value) {
            Ok(spec) => spec,
            Err(e) => return ApiError::bad_request(format!("a key: {e}")).into_response(),
        },
        Err(e) => {
            return ApiError::bad_request(format!("the body is not JSON: {e}")).into_response();
        }
    };
    match state.keys.add(spec) {
        Ok((secret, key)) => {
            let mut shown = describe(&key, &[]);
            shown["key"] = Value::String(secret);
            tracing::info!(key = key.name(), "gateway key made");
            json_response(StatusCode::CREATED, shown.to_string())
        }
        Err(e) => refused(e).into_response(),
    }
}

/// `DELETE /admin/keys/{name}`: revokes a key made through the API.
pub fn remove(state: &AppState, name: &str) -> Response<Body> {
    match state.keys.remove(name) {
        Ok(()) => {
            tracing::info!(key = name, "gateway key revoked");
            json_response(StatusCode::OK, json!({"deleted": name}).to_string())
        }
        Err(e) => refused(e).into_response(),
    }
}

fn refused(e: KeysError) -> ApiError {
    let (status, code) = match &e {
        KeysError::Invalid { .. } | KeysError::File(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        KeysError::Exists(_) => (StatusCode::CONFLICT, "key_exists"),
        KeysError::InFile(_) => (StatusCode::CONFLICT, "key_in_file"),
        KeysError::Unknown(_) => (StatusCode::NOT_FOUND, "key_not_found"),
        KeysError::Store(_) | KeysError::NoStore => {
            (StatusCode::INTERNAL_SERVER_ERROR, "key_store")
        }
    };
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    ApiError::new(status, kind, code, e.to_string())
}
