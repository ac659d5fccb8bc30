//! `tollgate keys add|list|rm`: the command line's side of `/admin/keys`
//! on a running gateway, with the master key from the environment.

use serde_json::Value;
use std::time::Duration;

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?)
}

/// Sends `request` and reads a JSON answer, turning the gateway's error
/// into the message it gave.
async fn call(
    url: &str,
    request: reqwest::RequestBuilder,
    master: Option<&str>,
) -> anyhow::Result<Value> {
    let request = match master {
        Some(key) => request.bearer_auth(key),
        None => request,
    };
    let response = request.send().await.map_err(|e| {
        if e.is_connect() {
            anyhow::anyhow!("no gateway answers at {url} (start one, or pass --url)")
        } else {
            anyhow::anyhow!("asking {url}: {e}")
        }
    })?;
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "the gateway at {url} wants its master key: set TOLLGATE_MASTER_KEY ({message})"
        );
    }
    anyhow::bail!("the gateway at {url} answered {status}: {message}")
}

fn endpoint(url: &str, path: &str) -> String {
    format!("{}{path}", url.trim_end_matches('/'))
}

pub async fn add(url: &str, master: Option<&str>, spec: Value) -> anyhow::Result<Value> {
    call(
        url,
        client()?
            .post(endpoint(url, "/admin/keys"))
            .header("content-type", "application/json")
            .body(spec.to_string()),
        master,
    )
    .await
}

pub async fn list(url: &str, master: Option<&str>) -> anyhow::Result<Value> {
    call(url, client()?.get(endpoint(url, "/admin/keys")), master).await
}

pub async fn remove(url: &str, master: Option<&str>, name: &str) -> anyhow::Result<Value> {
    let path = format!("/admin/keys/{name}");
    call(url, client()?.delete(endpoint(url, &path)), master).await
}

/// The request body without the options left unset.
pub fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    }
    value
}

/// What `keys add` prints: the secret, once, and how to use it.
pub fn made(made: &Value) -> String {
    format!(
        "made the key `{}`; its secret is shown this once:\n\n  {}\n\nSend it as `Authorization: Bearer <key>` (OpenAI clients) or `x-api-key` (Anthropic's).\n",
        made["name"].as_str().unwrap_or(""),
        made["key"].as_str().unwrap_or("")
    )
}

/// What `keys list` prints: one key a line.
pub fn table(listed: &Value) -> String {
    let mut lines = vec![
        [
            "NAME",
            "SOURCE",
            "MODELS",
            "LIMITS",
            "REQUESTS",
            "TOKENS",
            "SPEND",
            "BUDGET LEFT",
        ]
        .map(String::from),
    ];
    for key in listed["keys"].as_array().into_iter().flatten() {
        let models = key["models"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "*".into());
        let limits: Vec<String> = ["rpm", "rpd", "tpm", "tpd"]
            .iter()
            .filter_map(|w| key[*w].as_u64().map(|n| format!("{w}={n}")))
            .collect();
        let number = |v: &Value| v.as_f64().map_or("-".into(), |n| format!("{n}"));
        lines.push([
            key["name"].as_str().unwrap_or("").into(),
            key["source"].as_str().unwrap_or("").into(),
            models,
            if limits.is_empty() {
                "-".into()
            } else {
                limits.join(" ")
            },
            number(&key["usage"]["requests"]),
            number(&key["usage"]["tokens"]),
            key["usage"]["spend_usd"]
                .as_f64()
                .map_or("-".into(), super::usd),
            key["remaining"]["budget_usd"]
                .as_f64()
                .map_or("-".into(), super::usd),
        ]);
    }
    if lines.len() == 1 {
        return "(no gateway keys: the gateway takes only its master key, if one is set)\n".into();
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|line| {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}
