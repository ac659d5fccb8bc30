//! An adapter for the Acme Inference API (made up for the SDK's guide): a
//! path of its own, the key in an `X-Acme-Key` header, and request, answer,
//! stream and error shapes unlike OpenAI's.

use serde::Deserialize;
use serde_json::json;
use tollgate_sdk::openai::{self, ChatCompletion, ChatRequest, ChunkWriter, Delta, content_text};
use tollgate_sdk::prelude::*;

struct Acme;

impl Adapter for Acme {
    type Stream = SseStream<AcmeStream>;

    fn info() -> PluginInfo {
        plugin_info!("acme", [Mode::Chat])
    }

    fn build_request(target: &Target, request: &ClientRequest) -> Result<UpstreamRequest, String> {
        let chat: ChatRequest =
            serde_json::from_str(&request.body).map_err(|e| format!("not a chat request: {e}"))?;
        let (mut instructions, mut turns) = (Vec::new(), Vec::new());
        for message in &chat.messages {
            let text = content_text(&message.content);
            match message.role.as_str() {
                "system" | "developer" => instructions.push(text),
                "user" => turns.push(json!({ "speaker": "user", "text": text })),
                "assistant" => turns.push(json!({ "speaker": "model", "text": text })),
                other => {
                    return Err(format!(
                        "Acme takes no `{other}` messages (it has no tools)"
                    ));
                }
            }
        }
        let mut body = json!({ "model": target.model, "turns": turns, "stream": request.stream });
        if !instructions.is_empty() {
            body["instructions"] = json!(instructions.join("\n"));
        }
        if let Some(max) = chat.max_completion_tokens.or(chat.max_tokens) {
            body["max_output"] = json!(max);
        }
        if let Some(temperature) = chat.extra.get("temperature") {
            body["temperature"] = temperature.clone();
        }
        let url = join_url(&target.base_url, "generate");
        let mut upstream = json_post(url, body.to_string().into_bytes(), response_kind(request));
        upstream.credential = Credential::Header("x-acme-key".into());
        upstream
            .headers
            .push(("acme-version".into(), "2024-06-01".into()));
        Ok(upstream)
    }

    fn translate_response(
        target: &Target,
        _request: &ClientRequest,
        response: UpstreamResponse,
    ) -> Result<Reply, String> {
        let answer: Answer = serde_json::from_slice(&response.body)
            .map_err(|e| format!("Acme answered in a shape this adapter does not know: {e}"))?;
        let usage = answer.meter.usage();
        let finish = finish_reason(&answer.result.ended_by);
        let completion = ChatCompletion::assistant(
            answer.id,
            target.model.clone(),
            answer.result.text,
            Vec::new(),
            finish,
            Some(usage),
        );
        let body = serde_json::to_vec(&completion).map_err(|e| e.to_string())?;
        Ok(json_reply(body, Some(usage.into())))
    }

    fn classify_failure(_target: &Target, response: &UpstreamResponse) -> Failure {
        let problem = serde_json::from_slice::<Problem>(&response.body)
            .map(|p| p.problem)
            .unwrap_or_default();
        let kind = match problem.code.as_str() {
            "slow_down" => FailureKind::RateLimited,
            "out_of_credit" => FailureKind::QuotaExhausted,
            _ => tollgate_sdk::http::failure_kind(response.status, &response.body),
        };
        Failure {
            kind,
            message: problem.detail,
            retry_after_ms: problem.wait_seconds.map(|s| s * 1000),
        }
    }

    fn open_stream(target: &Target, request: &ClientRequest) -> Self::Stream {
        let wants_usage = openai::wants_stream_usage(&request.body);
        SseStream::new(AcmeStream {
            writer: ChunkWriter::new(&target.model, wants_usage),
        })
    }
}

/// `{"id", "result": {"text", "ended_by"}, "meter": {"in", "out"}}`
#[derive(Deserialize)]
struct Answer {
    id: String,
    result: Output,
    meter: Meter,
}

#[derive(Deserialize)]
struct Output {
    text: String,
    ended_by: String,
}

#[derive(Deserialize)]
struct Meter {
    #[serde(rename = "in")]
    input: u64,
    #[serde(rename = "out")]
    output: u64,
}

impl Meter {
    fn usage(&self) -> openai::Usage {
        openai::Usage::new(self.input, self.output)
    }
}

fn finish_reason(ended_by: &str) -> &'static str {
    match ended_by {
        "limit" => "length",
        _ => "stop",
    }
}

/// `{"problem": {"code", "detail", "wait_seconds"}}`
#[derive(Deserialize)]
struct Problem {
    problem: ProblemBody,
}

#[derive(Deserialize, Default)]
struct ProblemBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
    wait_seconds: Option<u64>,
}

/// Acme's events: `start {"id"}`, then `text {"delta"}` as the answer
/// grows, then `finish {"ended_by", "meter"}`.
struct AcmeStream {
    writer: ChunkWriter,
}

#[derive(Deserialize)]
struct Start {
    id: String,
}

#[derive(Deserialize)]
struct Text {
    delta: String,
}

#[derive(Deserialize)]
struct Finish {
    ended_by: String,
    meter: Meter,
}

fn read<'a, T: Deserialize<'a>>(event: &'a SseEvent) -> Result<T, String> {
    serde_json::from_str(&event.data).map_err(|e| format!("Acme's `{}` event: {e}", event.event))
}

impl EventTranslate for AcmeStream {
    fn events(&mut self, events: Vec<SseEvent>) -> Result<StreamOutput, String> {
        let mut out = tollgate_sdk::empty_output();
        for event in &events {
            match event.event.as_str() {
                "start" => {
                    self.writer.id = read::<Start>(event)?.id;
                    out.chunks.push(self.writer.chunk(Delta::opening(), None));
                }
                "text" => {
                    let text = read::<Text>(event)?;
                    out.chunks
                        .push(self.writer.chunk(Delta::text(&text.delta), None));
                }
                "finish" => {
                    let finish = read::<Finish>(event)?;
                    let reason = finish_reason(&finish.ended_by);
                    out.chunks
                        .push(self.writer.chunk(Delta::default(), Some(reason)));
                    self.writer.close(&mut out, Some(finish.meter.usage()));
                }
                // Keep-alives, and events this adapter has no use for.
                _ => {}
            }
        }
        Ok(out)
    }
}

export_adapter!(Acme);
