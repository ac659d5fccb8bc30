//! A mock upstream driven by a closure: each test writes the provider's side
//! of the protocol it checks (Anthropic Messages, Cohere v2, a speech server's
//! audio, a multipart transcription endpoint), and the mock records every
//! request whole, bytes included, for the test to inspect.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the upstream got no JSON ({e}): {:?}", self.body))
    }

    /// The parts of a multipart body: (name, filename, bytes).
    pub async fn multipart(&self) -> Vec<(String, Option<String>, Bytes)> {
        let boundary = multer::parse_boundary(self.header("content-type").unwrap()).unwrap();
        let body = self.body.clone();
        let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        let mut parts = Vec::new();
        while let Some(field) = form.next_field().await.unwrap() {
            let name = field.name().unwrap_or_default().to_owned();
            let filename = field.file_name().map(str::to_owned);
            parts.push((name, filename, field.bytes().await.unwrap()));
        }
        parts
    }
}

/// What the mock answers.
pub enum Answer {
    /// A whole body with this status and content type.
    Body {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// Server-sent events, one network write each, `gap` apart.
    Events { frames: Vec<String>, gap: Duration },
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Self {
        Answer::Body {
            status,
            content_type: "application/json".into(),
            body: body.to_string().into_bytes(),
        }
    }

    pub fn bytes(content_type: &str, body: &[u8]) -> Self {
        Answer::Body {
            status: 200,
            content_type: content_type.into(),
            body: body.to_vec(),
        }
    }

    pub fn events(frames: Vec<String>) -> Self {
        Answer::Events {
            frames,
            gap: Duration::from_millis(2),
        }
    }
}

type Handler = dyn Fn(&Recorded) -> Answer + Send + Sync;

#[derive(Clone)]
pub struct Scripted {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Recorded>>>,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
}

impl Scripted {
    pub async fn start(handler: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = received.clone();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (handler, log) = (handler.clone(), log.clone());
                let service = service_fn(move |request| {
                    let (handler, log) = (handler.clone(), log.clone());
                    async move { Ok::<_, Infallible>(answer(request, &*handler, &log).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Scripted {
            addr,
            received,
            connections,
        }
    }

    /// `http://ADDR` followed by `root` (e.g. `/v1`).
    pub fn url(&self, root: &str) -> String {
        format!("http://{}{root}", self.addr)
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }

    /// How many connections the mock has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(
    request: Request<Incoming>,
    handler: &Handler,
    log: &Mutex<Vec<Recorded>>,
) -> Response<MockBody> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let recorded = Recorded {
        method,
        path,
        headers,
        body,
    };
    let answer = handler(&recorded);
    log.lock().unwrap().push(recorded);
    match answer {
        Answer::Body {
            status,
            content_type,
            body,
        } => Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap(),
        Answer::Events { frames, gap } => {
            let stream =
                futures_util::stream::unfold(frames.into_iter(), move |mut rest| async move {
                    let frame = rest.next()?;
                    tokio::time::sleep(gap).await;
                    Some((Ok::<_, Infallible>(Frame::data(Bytes::from(frame))), rest))
                });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
    }
}
