//! Mock local model servers sharing one simulated card: an Ollama, a talkies
//! speech server and an sd.cpp image server. Each loads a model the way the
//! real one does (Ollama and talkies on first request, sd.cpp on
//! `/sdcpp/v1/load`), frees it on the real unload calls, and records on the
//! shared [`Card`] what is resident, so a test can check that the sum never
//! exceeded the card and that sd.cpp never saw two jobs at once.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The simulated GPU: what each backend has resident, and the most that
/// was ever resident at once.
#[derive(Default)]
pub struct Card {
    state: Mutex<CardState>,
}

#[derive(Default)]
struct CardState {
    /// (backend, model) → MB.
    resident: BTreeMap<(String, String), u64>,
    peak_mb: u64,
}

impl Card {
    fn load(&self, backend: &str, model: &str, mb: u64) {
        let mut state = self.state.lock().unwrap();
        state
            .resident
            .insert((backend.to_owned(), model.to_owned()), mb);
        let total: u64 = state.resident.values().sum();
        state.peak_mb = state.peak_mb.max(total);
    }

    fn unload(&self, backend: &str, model: Option<&str>) {
        let mut state = self.state.lock().unwrap();
        state
            .resident
            .retain(|(b, m), _| b != backend || model.is_some_and(|model| m != model));
    }

    fn resident_of(&self, backend: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .resident
            .keys()
            .filter(|(b, _)| b == backend)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn peak_mb(&self) -> u64 {
        self.state.lock().unwrap().peak_mb
    }

    pub fn resident_mb(&self) -> u64 {
        self.state.lock().unwrap().resident.values().sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Ollama,
    Talkies,
    Sdcpp,
}

struct Inner {
    name: String,
    kind: Kind,
    card: Arc<Card>,
    /// Model id → MB on the card.
    sizes: HashMap<String, u64>,
    /// Inference jobs running now, and the most at once.
    jobs: AtomicUsize,
    max_jobs: AtomicUsize,
    /// sd.cpp answers 503 to a second concurrent job, as the real one does.
    busy_answers: AtomicUsize,
    /// Every request, as `METHOD path`.
    log: Mutex<Vec<String>>,
    /// The model sd.cpp has loaded.
    loaded: Mutex<Option<String>>,
    /// How long a job takes.
    job_time: Duration,
}

#[derive(Clone)]
pub struct LocalMock {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl LocalMock {
    pub async fn start(name: &str, kind: Kind, card: Arc<Card>, sizes: &[(&str, u64)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            kind,
            card,
            sizes: sizes.iter().map(|(m, mb)| (m.to_string(), *mb)).collect(),
            jobs: AtomicUsize::new(0),
            max_jobs: AtomicUsize::new(0),
            busy_answers: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            loaded: Mutex::new(None),
            job_time: Duration::from_millis(40),
        });
        let server = inner.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                let service = service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(request).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        LocalMock { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn max_jobs(&self) -> usize {
        self.inner.max_jobs.load(Ordering::SeqCst)
    }

    pub fn busy_answers(&self) -> usize {
        self.inner.busy_answers.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<String> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn resident(&self) -> Vec<String> {
        self.inner.card.resident_of(&self.inner.name)
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

fn json_reply(status: u16, body: Value) -> Response<MockBody> {
    reply(status, "application/json", body.to_string())
}

/// Counts a running job for its lifetime.
struct Job<'a>(&'a Inner);

impl<'a> Job<'a> {
    fn start(inner: &'a Inner) -> (Self, usize) {
        let running = inner.jobs.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_jobs.fetch_max(running, Ordering::SeqCst);
        (Job(inner), running)
    }
}

impl Drop for Job<'_> {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<MockBody> {
        let method = request.method().clone();
        let path = request
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| p.to_string());
        self.log.lock().unwrap().push(format!("{method} {path}"));
        let body = request.into_body().collect().await.unwrap().to_bytes();
        match (self.kind, &method, path.as_str()) {
            (Kind::Ollama, &Method::GET, "/api/ps") => {
                let models: Vec<Value> = self
                    .card
                    .resident_of(&self.name)
                    .into_iter()
                    .map(|m| json!({"name": m, "model": m}))
                    .collect();
                json_reply(200, json!({"models": models}))
            }
            (Kind::Ollama, &Method::POST, "/api/generate") => {
                let request: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(request["keep_alive"], 0);
                self.card.unload(&self.name, request["model"].as_str());
                json_reply(200, json!({"model": request["model"], "done": true}))
            }
            (Kind::Talkies, &Method::DELETE, p) if p.starts_with("/api/ps/") => {
                let model = &p["/api/ps/".len()..];
                if !self.card.resident_of(&self.name).iter().any(|m| m == model) {
                    return json_reply(404, json!({"detail": "not loaded"}));
                }
                self.card.unload(&self.name, Some(model));
                json_reply(200, json!({"unloaded": model}))
            }
            (Kind::Sdcpp, &Method::POST, p) if p.starts_with("/sdcpp/v1/load?model=") => {
                let model = p["/sdcpp/v1/load?model=".len()..].to_owned();
                if model.starts_with("broken") {
                    return json_reply(500, json!({"error": "the weights are corrupt"}));
                }
                if self.jobs.load(Ordering::SeqCst) > 0 {
                    self.busy_answers.fetch_add(1, Ordering::SeqCst);
                    return json_reply(503, json!({"error": "busy"}));
                }
                self.card.unload(&self.name, None);
                let mb = self.size(&model);
                self.card.load(&self.name, &model, mb);
                *self.loaded.lock().unwrap() = Some(model);
                json_reply(200, json!({"loaded": true}))
            }
            (Kind::Sdcpp, &Method::POST, "/sdcpp/v1/unload") => {
                self.card.unload(&self.name, None);
                *self.loaded.lock().unwrap() = None;
                json_reply(200, json!({"unloaded": true}))
            }
            (_, &Method::POST, p) if p.starts_with("/v1/") => self.infer(p, &body).await,
            _ => json_reply(404, json!({"error": format!("no {method} {path}")})),
        }
    }

    fn size(&self, model: &str) -> u64 {
        *self
            .sizes
            .get(model)
            .unwrap_or_else(|| panic!("{} knows no model {model}", self.name))
    }

    /// The model a request names: JSON `model`, or a multipart `model` field.
    fn model_of(&self, body: &[u8]) -> String {
        if let Ok(json) = serde_json::from_slice::<Value>(body) {
            return json["model"].as_str().unwrap_or_default().to_owned();
        }
        let text = String::from_utf8_lossy(body);
        self.sizes
            .keys()
            .find(|m| text.contains(&format!("name=\"model\"\r\n\r\n{m}\r\n")))
            .cloned()
            .unwrap_or_default()
    }

    async fn infer(&self, path: &str, body: &[u8]) -> Response<MockBody> {
        let model = self.model_of(body);
        let (_job, running) = Job::start(self);
        if self.kind == Kind::Sdcpp {
            if running > 1 {
                self.busy_answers.fetch_add(1, Ordering::SeqCst);
                return json_reply(503, json!({"error": "a job is already running"}));
            }
            if self.loaded.lock().unwrap().as_deref() != Some(model.as_str()) {
                return json_reply(400, json!({"error": format!("{model} is not loaded")}));
            }
        } else if !self.card.resident_of(&self.name).contains(&model) {
            // Ollama and talkies load on first use.
            let mb = self.size(&model);
            self.card.load(&self.name, &model, mb);
        }
        if model.starts_with("broken") {
            return json_reply(500, json!({"error": "the model crashed"}));
        }
        let stream = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|b| b["stream"].as_bool())
            .unwrap_or(false);
        if stream {
            return self.stream(&model);
        }
        tokio::time::sleep(self.job_time).await;
        match path {
            "/v1/chat/completions" => json_reply(
                200,
                json!({
                "id": "local", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("{} ran {model}", self.name)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}),
            ),
            "/v1/audio/transcriptions" => {
                json_reply(200, json!({"text": format!("{model} heard you")}))
            }
            "/v1/audio/speech" => reply(200, "audio/wav", vec![7u8; 4096]),
            "/v1/images/generations" => json_reply(
                200,
                json!({"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}]}),
            ),
            other => json_reply(404, json!({"error": format!("no {other}")})),
        }
    }

    /// A chat stream of ten chunks, 20 ms apart (200 ms for a model named
    /// `slow…`): long enough for a client to walk away in the middle.
    fn stream(&self, model: &str) -> Response<MockBody> {
        let gap = Duration::from_millis(if model.starts_with("slow") { 200 } else { 20 });
        let model = model.to_owned();
        let frames = (0..=10).map(move |i| {
            if i == 10 {
                return "data: [DONE]\n\n".to_owned();
            }
            let chunk = json!({"id": "s", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": {"content": format!("{i} ")}, "finish_reason": null}]});
            format!("data: {chunk}\n\n")
        });
        let stream = futures_util::stream::unfold(frames, move |mut frames| async move {
            let frame = frames.next()?;
            tokio::time::sleep(gap).await;
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(frame))), frames))
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(StreamBody::new(stream).boxed())
            .unwrap()
    }
}
