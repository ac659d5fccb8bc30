//! A mock upstream that speaks OpenAI's wire format over raw TCP, so a test
//! can make it misbehave the ways real providers do: 429 with rate-limit
//! headers, 5xx, a reset connection, a stall, a stream that breaks off.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// What the mock does with the next requests.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Answer like OpenAI: a completion, or an SSE stream when asked.
    Ok,
    /// Answer with this status, extra headers and body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Close the connection without answering (TCP reset).
    Reset,
    /// Accept the request and never answer.
    Stall,
    /// Stream two chunks, then reset the connection.
    BreakMidStream,
    /// Stream the first chunk, then wait for [`Mock::release`].
    Gated,
    /// Answer like OpenAI, adding these headers (rate-limit reports).
    OkWithHeaders(Vec<(String, String)>),
    /// Enforce a provider limit of `per_minute` requests in any 60 seconds,
    /// as a strict sliding log: beyond it, answer 429.
    Limited { per_minute: usize },
    /// Send the head, then a piece every 50 ms, forever: an SSE event
    /// when streaming, a space of a JSON body otherwise. A write that
    /// fails (the gateway hung up) counts in [`Mock::hung_up`].
    Trickle,
    /// Stream events that are not JSON, then `[DONE]`.
    MalformedSse,
    /// Answer a body of `mib` MiB (JSON whitespace), at full speed.
    Huge { mib: usize },
    /// Allow `limit` requests in all, reporting what remains in Groq's
    /// headers (`x-ratelimit-*-requests`, the reset as a Go duration);
    /// beyond it, answer 429.
    Reporting { limit: usize, reset: String },
}

impl Behavior {
    pub fn status(status: u16, body: &str) -> Self {
        Behavior::Status {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    pub fn rate_limited() -> Self {
        Behavior::Status {
            status: 429,
            headers: vec![
                ("retry-after".into(), "7".into()),
                ("x-ratelimit-limit-requests".into(), "30".into()),
                ("x-ratelimit-remaining-requests".into(), "0".into()),
                ("x-ratelimit-reset-requests".into(), "2m59.56s".into()),
            ],
            body: r#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#.into(),
        }
    }
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    behavior: Behavior,
    received: Vec<Received>,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
    /// Requests [`Behavior::Limited`] accepted, and how many it refused.
    accepted: Vec<std::time::Instant>,
    rejected: usize,
    /// Trickled bodies the gateway stopped reading.
    hung_up: usize,
}

#[derive(Clone)]
pub struct Mock {
    pub addr: SocketAddr,
    /// The reply text the mock puts in completions, to tell mocks apart.
    pub name: String,
    state: Arc<Mutex<State>>,
    gate: Arc<Notify>,
}

impl Mock {
    pub async fn start(name: &str) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mock = Mock {
            addr: listener.local_addr().unwrap(),
            name: name.to_owned(),
            state: Arc::new(Mutex::new(State {
                behavior: Behavior::Ok,
                received: Vec::new(),
                arrivals: Vec::new(),
                accepted: Vec::new(),
                rejected: 0,
                hung_up: 0,
            })),
            gate: Arc::new(Notify::new()),
        };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(socket).await });
            }
        });
        mock
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, behavior: Behavior) {
        self.state.lock().unwrap().behavior = behavior;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// How many requests a [`Behavior::Limited`] mock answered with 429.
    pub fn rejected(&self) -> usize {
        self.state.lock().unwrap().rejected
    }

    /// How many [`Behavior::Trickle`] bodies the gateway hung up on.
    pub fn hung_up(&self) -> usize {
        self.state.lock().unwrap().hung_up
    }

    /// Lets a [`Behavior::Gated`] stream finish.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    async fn serve(&self, mut socket: TcpStream) {
        let Some(request) = read_request(&mut socket).await else {
            return;
        };
        let behavior = {
            let mut state = self.state.lock().unwrap();
            let now = std::time::Instant::now();
            state.received.push(request.clone());
            state.arrivals.push(now);
            match state.behavior.clone() {
                Behavior::Limited { per_minute } => {
                    let window = Duration::from_secs(60);
                    let recent = state
                        .accepted
                        .iter()
                        .filter(|t| now.duration_since(**t) < window)
                        .count();
                    if recent >= per_minute {
                        state.rejected += 1;
                        Behavior::rate_limited()
                    } else {
                        state.accepted.push(now);
                        Behavior::Ok
                    }
                }
                Behavior::Reporting { limit, reset } => {
                    if state.accepted.len() >= limit {
                        state.rejected += 1;
                        Behavior::rate_limited()
                    } else {
                        state.accepted.push(now);
                        let left = limit - state.accepted.len();
                        Behavior::OkWithHeaders(vec![
                            ("x-ratelimit-limit-requests".into(), limit.to_string()),
                            ("x-ratelimit-remaining-requests".into(), left.to_string()),
                            ("x-ratelimit-reset-requests".into(), reset),
                        ])
                    }
                }
                other => other,
            }
        };
        let stream = request.body["stream"].as_bool().unwrap_or(false);
        match behavior {
            Behavior::Ok if stream => self.stream(socket, &request, None).await,
            Behavior::Ok | Behavior::Limited { .. } | Behavior::Reporting { .. } => {
                let body = self.completion(&request).to_string();
                respond(&mut socket, 200, &[], &body).await;
            }
            Behavior::OkWithHeaders(headers) => {
                let body = self.completion(&request).to_string();
                respond(&mut socket, 200, &headers, &body).await;
            }
            Behavior::Status {
                status,
                headers,
                body,
            } => respond(&mut socket, status, &headers, &body).await,
            Behavior::Reset => reset(socket),
            Behavior::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Behavior::BreakMidStream => self.stream(socket, &request, Some(2)).await,
            Behavior::Gated => self.stream(socket, &request, Some(usize::MAX)).await,
            Behavior::Trickle => self.trickle(socket, stream).await,
            Behavior::MalformedSse => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let body = "data: {this is not json\n\ndata: [DONE]\n\n";
                socket
                    .write_all(format!("{head}{body}").as_bytes())
                    .await
                    .ok();
                socket.shutdown().await.ok();
            }
            Behavior::Huge { mib } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    mib << 20
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b' '; 1 << 20];
                for _ in 0..mib {
                    if socket.write_all(&block).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// See [`Behavior::Trickle`].
    async fn trickle(&self, mut socket: TcpStream, stream: bool) {
        let (kind, first, piece) = if stream {
            let event = |text: &str| {
                let data = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
                    "model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
                format!("data: {data}\n\n")
            };
            ("text/event-stream", event("hello"), event("."))
        } else {
            ("application/json", " ".to_owned(), " ".to_owned())
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
        if socket.write_all(head.as_bytes()).await.is_err()
            || socket.write_all(chunk(&first).as_bytes()).await.is_err()
        {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if socket.write_all(chunk(&piece).as_bytes()).await.is_err() {
                self.state.lock().unwrap().hung_up += 1;
                return;
            }
        }
    }

    fn completion(&self, request: &Received) -> Value {
        json!({
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": request.body["model"],
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": format!("hello from {}", self.name)},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
        })
    }

    /// Streams "hello from NAME" word by word. `cut` breaks the stream after
    /// that many chunks (reset), or waits at the gate when `usize::MAX`.
    async fn stream(&self, mut socket: TcpStream, request: &Received, cut: Option<usize>) {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let model = request.body["model"].clone();
        let words = ["hello", " from", " ", self.name.as_str()];
        let mut events: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": word})
                } else {
                    json!({"content": word})
                };
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
                .to_string()
            })
            .collect();
        events.push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string());
        if request.body.pointer("/stream_options/include_usage") == Some(&json!(true)) {
            events.push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model, "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}}).to_string());
        }
        events.push("[DONE]".to_owned());
        for (i, event) in events.iter().enumerate() {
            if cut == Some(i) {
                return reset(socket);
            }
            if cut == Some(usize::MAX) && i == 1 {
                self.gate.notified().await;
            }
            let frame = format!("data: {event}\n\n");
            let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            socket.flush().await.ok();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        socket.write_all(b"0\r\n\r\n").await.ok();
    }
}

async fn respond(socket: &mut TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status} Mock\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await.ok();
    socket.write_all(body.as_bytes()).await.ok();
    socket.shutdown().await.ok();
}

/// Drops the connection with a TCP reset (linger 0).
fn reset(socket: TcpStream) {
    let std = socket.into_std().unwrap();
    drop(set_linger_zero(std));
}

/// Sets SO_LINGER to zero so closing sends RST, without extra crates.
fn set_linger_zero(stream: std::net::TcpStream) -> std::net::TcpStream {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        );
    }
    stream
}

/// Reads one HTTP/1.1 request with a content-length body.
async fn read_request(socket: &mut TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Received {
        path,
        headers,
        body,
    })
}
