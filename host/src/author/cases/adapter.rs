//! Adapter cases: a client request, the upstream request it must become,
//! the upstream's answer, and what the client must get back.

use super::{chat, failure_kind_name, mode, parse};
use crate::author::matching::{compare, short};
use crate::plugins::bindings::{
    Body, ClientRequest, FormValue, Mode, Reply, ResponseKind, Target, UpstreamRequest,
    UpstreamResponse, Usage,
};
use crate::plugins::{LoadedPlugin, PluginRuntime, Session};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterCase {
    #[serde(default)]
    about: String,
    #[serde(default)]
    target: TargetSpec,
    #[serde(default = "chat")]
    mode: String,
    request: Value,
    /// The provider's key, as the gateway would place it.
    #[serde(default = "test_key")]
    key: String,
    upstream_request: Option<ExpectedRequest>,
    upstream_response: Option<Recorded>,
    client_response: Option<ExpectedReply>,
    failure: Option<Value>,
    error: Option<String>,
}

fn test_key() -> String {
    "test-key".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TargetSpec {
    provider: String,
    alias: Option<String>,
    model: String,
    base_url: String,
    options: Value,
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            provider: "test".into(),
            alias: None,
            model: "test-model".into(),
            base_url: "https://api.example.com/v1".into(),
            options: json!({}),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExpectedRequest {
    method: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    body: Option<Value>,
    /// `json`, `event-stream` or `binary`: how the gateway reads the answer.
    response: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// JSON, or a string sent as it is.
    body: Option<Value>,
    /// Server-sent events, each written as `event:` and `data:` lines.
    events: Option<Vec<Event>>,
}

fn ok() -> u16 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    event: Option<String>,
    /// JSON, or a string written as it is (`[DONE]`).
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedReply {
    #[serde(default = "ok")]
    status: u16,
    content_type: Option<String>,
    body: Option<Value>,
    usage: Option<Value>,
    chunks: Option<Vec<Value>>,
    done: Option<bool>,
}

impl Recorded {
    fn bytes(&self) -> Vec<u8> {
        match &self.events {
            Some(events) => events
                .iter()
                .map(event_text)
                .collect::<String>()
                .into_bytes(),
            None => self
                .body
                .as_ref()
                .map_or_else(Vec::new, |b| as_text(b).into_bytes()),
        }
    }

    /// The pieces a stream arrives in: one per recorded event.
    fn pieces(&self) -> Vec<Vec<u8>> {
        match &self.events {
            Some(events) => events.iter().map(|e| event_text(e).into_bytes()).collect(),
            None => vec![self.bytes()],
        }
    }

    fn response(&self) -> UpstreamResponse {
        UpstreamResponse {
            status: self.status,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: self.bytes(),
        }
    }
}

/// One event as it goes over the wire.
fn event_text(event: &Event) -> String {
    let name = event
        .event
        .as_ref()
        .map_or_else(String::new, |name| format!("event: {name}\n"));
    format!("{name}data: {}\n\n", as_text(&event.data))
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) async fn run(
    text: &str,
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
) -> (String, Vec<String>) {
    let case: AdapterCase = match parse(text) {
        Ok(case) => case,
        Err(e) => return (String::new(), vec![e]),
    };
    let mut problems = Vec::new();
    if let Err(e) = run_adapter_case(&case, runtime, plugin, &mut problems).await {
        problems.push(e);
    }
    (case.about, problems)
}

/// One adapter case in flight: the target and client request the gateway
/// would hand the plugin.
struct Attempt<'a> {
    case: &'a AdapterCase,
    target: Target,
    request: ClientRequest,
}

/// `Err` ends the case early: the plugin trapped, refused as the case
/// expected (then `Ok`), or the case cannot go on.
async fn run_adapter_case(
    case: &AdapterCase,
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let mode = mode(&case.mode).ok_or_else(|| format!("unknown mode `{}`", case.mode))?;
    let attempt = Attempt {
        case,
        target: target(&case.target, mode, &case.request),
        request: ClientRequest {
            mode,
            body: case.request.to_string(),
            stream: case.request.get("stream") == Some(&Value::Bool(true)),
            uploads: Vec::new(),
        },
    };
    let mut session = runtime.session(plugin).await.map_err(|e| e.to_string())?;
    let Some(upstream) = attempt.build(&mut session).await? else {
        return Ok(());
    };
    // Checked even when the case expects nothing of it: a request the
    // gateway would refuse to send (the key to another origin) fails here.
    let anything = ExpectedRequest::default();
    let expected = case.upstream_request.as_ref().unwrap_or(&anything);
    compare_request(
        expected,
        &upstream,
        &case.key,
        &case.target.base_url,
        problems,
    );
    let Some(recorded) = &case.upstream_response else {
        return Ok(());
    };
    if !(200..300).contains(&recorded.status) {
        return attempt.failed(session, recorded, problems).await;
    }
    if case.failure.is_some() {
        problems.push(format!(
            "failure: the upstream answered {}, which is not a failure",
            recorded.status
        ));
    }
    match upstream.response {
        ResponseKind::EventStream => {
            let fresh = runtime.session(plugin).await.map_err(|e| e.to_string())?;
            attempt.streamed(session, fresh, recorded, problems).await
        }
        ResponseKind::Json | ResponseKind::Binary => {
            attempt.whole(session, recorded, problems).await
        }
    }
}

impl Attempt<'_> {
    /// `build-request`: the upstream request, or `None` when the plugin
    /// refused as the case expects.
    async fn build(&self, session: &mut Session) -> Result<Option<UpstreamRequest>, String> {
        let built = session
            .build_request(&self.target, &self.request)
            .await
            .map_err(|e| format!("build-request: {e}"))?;
        match (built, &self.case.error) {
            (Err(message), Some(expected)) => refused_as(&message, expected).map(|()| None),
            (Err(message), None) => Err(format!("build-request refused the request: {message}")),
            (Ok(_), Some(expected)) if self.case.upstream_response.is_none() => Err(format!(
                "build-request made a request; the case expects it to refuse with \"{expected}\""
            )),
            (Ok(upstream), _) => Ok(Some(upstream)),
        }
    }

    /// An error status: what `classify-failure` makes of it.
    async fn failed(
        &self,
        mut session: Session,
        recorded: &Recorded,
        problems: &mut Vec<String>,
    ) -> Result<(), String> {
        if self.case.client_response.is_some() {
            problems.push(format!(
                "client_response: the upstream answered {}, and an error status is classified, not translated: expect `failure`",
                recorded.status
            ));
        }
        let failure = session
            .classify_failure(&self.target, &recorded.response())
            .await
            .map_err(|e| format!("classify-failure: {e}"))?;
        let got = json!({
            "kind": failure_kind_name(failure.kind),
            "message": failure.message,
            "retry_after_ms": failure.retry_after_ms,
        });
        match &self.case.failure {
            Some(expected) => compare(expected, &got, "failure", problems),
            None => problems.push(format!(
                "the upstream's {} was classified as {}: say so in `failure`",
                recorded.status,
                short(&got)
            )),
        }
        Ok(())
    }

    /// A stream, fed as recorded on `session` and byte by byte on `fresh`.
    async fn streamed(
        &self,
        session: Session,
        fresh: Session,
        recorded: &Recorded,
        problems: &mut Vec<String>,
    ) -> Result<(), String> {
        let translated =
            translate_stream(session, &self.target, &self.request, &recorded.pieces()).await;
        let as_recorded = match (translated, &self.case.error) {
            (Err(message), Some(expected)) => return refused_as(&message, expected),
            (Err(message), None) => return Err(message),
            (Ok(_), Some(expected)) => {
                return Err(format!(
                    "the stream translated; the case expects it to fail with \"{expected}\""
                ));
            }
            (Ok(translated), None) => translated,
        };
        let bytes: Vec<Vec<u8>> = recorded.bytes().into_iter().map(|b| vec![b]).collect();
        let bytewise = translate_stream(fresh, &self.target, &self.request, &bytes).await?;
        if as_recorded != bytewise {
            problems.push(format!(
                "the stream translates differently when its bytes arrive one at a time: {} as recorded, {} byte by byte",
                short(&as_recorded),
                short(&bytewise)
            ));
        }
        if let Some(expected) = &self.case.client_response {
            compare_stream(expected, &as_recorded, problems);
        }
        Ok(())
    }

    /// A whole answer: what `translate-response` makes of it.
    async fn whole(
        &self,
        mut session: Session,
        recorded: &Recorded,
        problems: &mut Vec<String>,
    ) -> Result<(), String> {
        let reply = session
            .translate_response(&self.target, &self.request, &recorded.response())
            .await
            .map_err(|e| format!("translate-response: {e}"))?;
        match (reply, &self.case.error) {
            (Err(message), Some(expected)) => return refused_as(&message, expected),
            (Err(message), None) => problems.push(format!("translate-response failed: {message}")),
            (Ok(_), Some(expected)) => problems.push(format!(
                "translate-response succeeded; the case expects it to fail with \"{expected}\""
            )),
            (Ok(reply), None) => {
                if let Some(expected) = &self.case.client_response {
                    compare_reply(expected, &reply, problems);
                }
            }
        }
        Ok(())
    }
}

fn refused_as(message: &str, expected: &str) -> Result<(), String> {
    if message.contains(expected) {
        Ok(())
    } else {
        Err(format!(
            "refused with \"{message}\", expected a message with \"{expected}\""
        ))
    }
}

fn target(spec: &TargetSpec, mode: Mode, request: &Value) -> Target {
    let alias = spec.alias.clone().unwrap_or_else(|| {
        request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("test")
            .to_owned()
    });
    Target {
        provider: spec.provider.clone(),
        alias,
        model: spec.model.clone(),
        base_url: spec.base_url.clone(),
        mode,
        options: spec.options.to_string(),
    }
}

/// The request as the gateway would send it, key placed, against the case.
fn compare_request(
    expected: &ExpectedRequest,
    upstream: &UpstreamRequest,
    key: &str,
    base_url: &str,
    problems: &mut Vec<String>,
) {
    if let Some(kind) = &expected.response {
        let got = match upstream.response {
            ResponseKind::Json => "json",
            ResponseKind::EventStream => "event-stream",
            ResponseKind::Binary => "binary",
        };
        if kind != got {
            problems.push(format!(
                "upstream response kind: expected {kind}, got {got}"
            ));
        }
    }
    compare_body(expected.body.as_ref(), &upstream.body, problems);
    let mut headless = upstream.clone();
    headless.body = Body::Empty;
    let sent = match crate::upstream::outgoing(headless, key, base_url) {
        Ok(sent) => sent,
        Err(e) => return problems.push(format!("the gateway could not send this request: {e}")),
    };
    if let Some(method) = &expected.method
        && !sent.method().as_str().eq_ignore_ascii_case(method)
    {
        problems.push(format!("method: expected {method}, got {}", sent.method()));
    }
    if let Some(url) = &expected.url
        && sent.url().as_str() != url
    {
        problems.push(format!("url: expected {url}, got {}", sent.url()));
    }
    for (name, want) in &expected.headers {
        let got = sent
            .headers()
            .get(name.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match (want, got) {
            (Value::Null, None) => {}
            (Value::Null, Some(got)) => {
                problems.push(format!("header {name}: expected to be absent, got {got:?}"))
            }
            (want, None) => {
                problems.push(format!("header {name}: missing, expected {}", short(want)))
            }
            (want, Some(got)) if as_text(want) != got => {
                problems.push(format!(
                    "header {name}: expected {}, got {got:?}",
                    short(want)
                ));
            }
            _ => {}
        }
    }
}

fn compare_body(expected: Option<&Value>, body: &Body, problems: &mut Vec<String>) {
    let Some(expected) = expected else { return };
    let got = match body {
        Body::Empty => Value::Null,
        Body::Bytes(bytes) if expected.is_string() => {
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Body::Bytes(bytes) => match serde_json::from_slice(bytes) {
            Ok(json) => json,
            Err(e) => {
                return problems.push(format!(
                    "body: not JSON ({e}): {}",
                    String::from_utf8_lossy(bytes)
                ));
            }
        },
        Body::Multipart(parts) => Value::Array(
            parts
                .iter()
                .map(|p| match &p.value {
                    FormValue::Text(text) => json!({"name": p.name, "text": text}),
                    FormValue::Upload(field) => json!({"name": p.name, "upload": field}),
                })
                .collect(),
        ),
    };
    compare(expected, &got, "body", problems);
}

fn compare_reply(expected: &ExpectedReply, reply: &Reply, problems: &mut Vec<String>) {
    if expected.status != 200 {
        problems.push(format!(
            "client_response.status: a translated answer reaches the client as 200, not {}",
            expected.status
        ));
    }
    if let Some(content_type) = &expected.content_type
        && content_type != &reply.content_type
    {
        problems.push(format!(
            "content type: expected {content_type}, got {}",
            reply.content_type
        ));
    }
    if let Some(want) = &expected.body {
        let got = if want.is_string() {
            Value::String(String::from_utf8_lossy(&reply.body).into_owned())
        } else {
            match serde_json::from_slice(&reply.body) {
                Ok(json) => json,
                Err(e) => return problems.push(format!("body: not JSON ({e})")),
            }
        };
        compare(want, &got, "body", problems);
    }
    if let Some(want) = &expected.usage {
        compare(want, &usage_json(reply.usage.as_ref()), "usage", problems);
    }
    if expected.chunks.is_some() {
        problems.push(
            "client_response.chunks: the plugin asked for a whole answer, not a stream".into(),
        );
    }
}

fn usage_json(usage: Option<&Usage>) -> Value {
    usage.map_or(Value::Null, |u| {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
        })
    })
}

/// Feeds `pieces` to a translator, then ends the stream: the chunks, the
/// last usage reported and whether the upstream said it was done.
async fn translate_stream(
    session: Session,
    target: &Target,
    request: &ClientRequest,
    pieces: &[Vec<u8>],
) -> Result<Value, String> {
    let mut stream = session
        .open_stream(target, request)
        .await
        .map_err(|e| format!("opening the stream translator: {e}"))?;
    let (mut chunks, mut usage, mut done) = (Vec::new(), Value::Null, false);
    for piece in pieces.iter().map(Some).chain([None]) {
        let output = match piece {
            Some(bytes) => stream.push(bytes).await,
            None => stream.finish().await,
        }
        .map_err(|e| format!("translator: {e}"))?
        .map_err(|e| format!("the translator failed the stream: {e}"))?;
        for chunk in output.chunks {
            chunks.push(serde_json::from_str(&chunk).unwrap_or(Value::String(chunk)));
        }
        if output.usage.is_some() {
            usage = usage_json(output.usage.as_ref());
        }
        done |= output.done;
    }
    Ok(json!({"chunks": chunks, "usage": usage, "done": done}))
}

fn compare_stream(expected: &ExpectedReply, got: &Value, problems: &mut Vec<String>) {
    if let Some(chunks) = &expected.chunks {
        compare(
            &Value::Array(chunks.clone()),
            &got["chunks"],
            "chunks",
            problems,
        );
    }
    if let Some(usage) = &expected.usage {
        compare(usage, &got["usage"], "usage", problems);
    }
    if let Some(done) = expected.done {
        compare(&Value::Bool(done), &got["done"], "done", problems);
    }
    if expected.body.is_some() {
        problems
            .push("client_response.body: the plugin asked for a stream; expect `chunks`".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_field_is_an_error_not_a_pass() {
        let err = parse::<AdapterCase>(r#"{"request": {}, "upstream_reponse": {}}"#)
            .err()
            .unwrap();
        assert!(err.contains("unknown field `upstream_reponse`"), "{err}");
    }

    #[test]
    fn events_are_written_as_server_sent_events() {
        let recorded: Recorded = serde_json::from_value(json!({
            "events": [{"event": "token", "data": {"text": "Hi"}}, {"data": "[DONE]"}]
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8(recorded.bytes()).unwrap(),
            "event: token\ndata: {\"text\":\"Hi\"}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(recorded.pieces().len(), 2);
    }
}
