//! Tollgate against a bare reverse proxy, on one machine, in one run.
//!
//! Three targets get the same load: (a) a fast mock upstream directly, (b) a
//! bare reverse proxy in front of it (hyper server + pooled reqwest client,
//! streaming bodies through: what any proxy must do at least), (c) the real
//! `tollgate` binary with its real OpenAI adapter plugin, `free-first`
//! policy plugin and ledger in the path. The mock and the proxy run as
//! separate processes (this binary, re-executed in a role), so each one's
//! memory is its own. Everything shares the machine's cores, as it would.
//!
//! `cargo bench -p tollgate --bench proxy` (or `just bench`) prints the
//! README's table; `-- --soak SECS` runs the soak instead, `-- --pair
//! ROUNDS` two gateways against each other (see `pair_run`), and
//! `-- --protocols ROUNDS` one gateway's three chat protocols side by side
//! (see `protocols_run`). `BENCH_CPUS=0`
//! runs every process on one core (see `pin_from_env`); `BENCH_AWAKE=1`
//! keeps the cores from idling (see `Awake`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

mod common;
use common::load::*;
use common::machine::*;
use common::processes::*;
use common::{COMPLETION, MESSAGES_REQUEST, REQUEST, RESPONSES_REQUEST, ROLE};

/// Chunks a streamed answer has.
const CHUNKS: usize = 8;
/// Streams timed per target in each round.
const STREAMS_PER_ROUND: usize = 40;

/// Rounds each measurement is cut into (see `main`): 6, or `BENCH_ROUNDS`.
fn rounds() -> u32 {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(6)
}

/// The mock's pause between chunks: 5 ms, or `BENCH_CHUNK_GAP_MS`. A stream
/// leaves the cores idle most of the time, and on a VM a core that has idled
/// runs the next request several times slower; a 1 ms gap shows the time to
/// the first chunk on cores kept busy.
fn chunk_gap() -> Duration {
    static GAP: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *GAP.get_or_init(|| {
        let ms = std::env::var("BENCH_CHUNK_GAP_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        Duration::from_millis(ms)
    })
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

// ------------------------------------------------------------------ roles

/// Serves `handler` on an ephemeral port and prints `listening ADDR`.
async fn serve<F, Fut>(handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).ok();
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(r).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The mock upstream: a fixed completion, or a stream of `CHUNKS` chunks;
/// a body mentioning `hold` keeps its stream open for a minute.
async fn mock(request: Request<Incoming>) -> Response<Body> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Some(response) = fault(&text).await {
        return response;
    }
    if !text.contains("\"stream\":true") {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed_unsync())
            .unwrap();
    }
    let hold = text.contains("hold");
    // The chunks come from the connection's own task: a task spawned to feed
    // a channel would add a hop to another thread, and on a VM a wake-up of
    // an idle core, to every target's time to first chunk.
    let chunks = futures_util::stream::unfold(0, move |i| async move {
        if i > CHUNKS {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(if hold {
                Duration::from_secs(60)
            } else {
                chunk_gap()
            })
            .await;
        }
        let chunk = if i < CHUNKS {
            Bytes::from(format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n"
            ))
        } else {
            Bytes::from_static(b"data: [DONE]\n\n")
        };
        Some((Ok(Frame::data(chunk)), i + 1))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed_unsync(StreamBody::new(chunks)))
        .unwrap()
}

/// The soak's faults, named in the request's text (see `common::soak`):
/// a 500, a stream that goes silent after a chunk, a stream that is not
/// JSON, and a stall longer than the soak gateway's response timeout.
async fn fault(text: &str) -> Option<Response<Body>> {
    let sse = |body: Body| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    };
    if text.contains("fault-500") {
        let body = Full::new(Bytes::from_static(br#"{"error":{"message":"boom"}}"#));
        return Some(
            Response::builder()
                .status(500)
                .header("content-type", "application/json")
                .body(body.boxed_unsync())
                .unwrap(),
        );
    }
    if text.contains("fault-break") {
        let first = Bytes::from_static(
            b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w\"},\"finish_reason\":null}]}\n\n",
        );
        // One chunk, then silence past the soak gateway's idle timeout.
        let frames = futures_util::stream::unfold(Some(first), |first| async move {
            match first {
                Some(first) => Some((Ok(Frame::data(first)), None)),
                None => {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    None
                }
            }
        });
        return Some(sse(BodyExt::boxed_unsync(StreamBody::new(frames))));
    }
    if text.contains("fault-garbage") {
        let body = Full::new(Bytes::from_static(b"data: {not json\n\ndata: [DONE]\n\n"));
        return Some(sse(body.boxed_unsync()));
    }
    if text.contains("fault-stall") {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    None
}

/// The bare proxy: forwards method, path, body and content type to the
/// upstream with a pooled client, and streams the answer back.
async fn proxy(
    client: reqwest::Client,
    upstream: String,
    request: Request<Incoming>,
) -> Response<Body> {
    let url = format!("{upstream}{}", request.uri().path());
    let method = request.method().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let sent = client
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let Ok(response) = sent else {
        return Response::builder()
            .status(502)
            .body(Full::new(Bytes::new()).boxed_unsync())
            .unwrap();
    };
    let mut out = Response::builder().status(response.status().as_u16());
    if let Some(kind) = response.headers().get("content-type") {
        out = out.header("content-type", kind.clone());
    }
    // The answer streams straight from the client's body into the server's:
    // no task or channel between them.
    let chunks = futures_util::stream::unfold(response, |mut response| async move {
        let chunk = response.chunk().await.ok().flatten()?;
        Some((Ok(Frame::data(chunk)), response))
    });
    out.body(BodyExt::boxed_unsync(StreamBody::new(chunks)))
        .unwrap()
}

fn run_role(role: &str) {
    if role == "spinner" {
        spin();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match role {
            "mock" => serve(mock).await,
            "proxy" => {
                let upstream = std::env::var("UPSTREAM").unwrap();
                let client = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .no_proxy()
                    .build()
                    .unwrap();
                serve(move |r| proxy(client.clone(), upstream.clone(), r)).await
            }
            "load" => load_only().await,
            other => panic!("unknown role {other}"),
        }
    });
}

/// Closed-loop load on one URL, for profiling a target by hand:
/// `TOLLGATE_BENCH_ROLE=load URL=… CONCURRENCY=32 SECONDS=10 <bench binary>`,
/// or `RATE=1000` for an open loop at a fixed rate.
async fn load_only() {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let url = var("URL", "http://127.0.0.1:8080/v1/chat/completions");
    let concurrency = var("CONCURRENCY", "32").parse().expect("CONCURRENCY");
    let seconds = var("SECONDS", "10").parse().expect("SECONDS");
    let duration = Duration::from_secs(seconds);
    // RATE: an open loop at that many requests a second instead.
    let sample = match std::env::var("RATE").ok().and_then(|r| r.parse().ok()) {
        Some(rate) => fixed_rate(&url, rate, duration).await,
        None => closed_loop(&url, concurrency, duration).await,
    };
    println!(
        "{} requests, {} errors, {:.0}/s, p50 {:.0} µs, p99 {:.0} µs",
        sample.requests,
        sample.errors,
        sample.rps(),
        sample.pct(0.5),
        sample.pct(0.99)
    );
}

// ------------------------------------------------------------------ report

#[derive(Default)]
struct Row {
    c1: Sample,
    c32: Sample,
    rate: Sample,
    ttfb: Sample,
    gaps: Vec<f64>,
    peak_rss_kb: u64,
}

impl Row {
    fn mean_gap(&self) -> f64 {
        self.gaps.iter().sum::<f64>() / self.gaps.len().max(1) as f64
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return run_role(&role);
    }
    let pinned = pin_from_env();
    let awake = Awake::from_env();
    let args: Vec<String> = std::env::args().collect();
    let soak = flag_value(&args, "--soak").map(|secs| secs.unwrap_or(600));
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The latency measurements run on one thread: on the multi-threaded
    // runtime every response crossed from the connection's task on one
    // worker to the measuring task on another, and that wake-up of an idle
    // core was counted as the target's latency.
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mock = role("mock", None);
    let bare = role("proxy", Some(mock.addr));
    if let Some(rounds) = flag_value(&args, "--pair") {
        return runtime.block_on(pair_run(&mock, &bare, rounds.unwrap_or(20)));
    }
    let gateway = tollgate(mock.addr, dir.path(), &tollgate_binary(), None);
    std::thread::sleep(Duration::from_millis(300));
    if let Some(rounds) = flag_value(&args, "--protocols") {
        return protocols_run(&gateway, rounds.unwrap_or(10), &runtime, &one_thread);
    }
    let idle_rss = gateway.rss_kb("VmRSS:");
    if let Some(secs) = soak {
        drop(gateway);
        let gateway = tollgate_with(
            mock.addr,
            dir.path(),
            &tollgate_binary(),
            None,
            common::soak::SOAK_TIMEOUTS,
        );
        std::thread::sleep(Duration::from_millis(300));
        let rate = std::env::var("SOAK_RATE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(400);
        if !runtime.block_on(common::soak::run(&gateway, secs, rate)) {
            std::process::exit(1);
        }
        return;
    }
    let duration = Duration::from_secs(seconds);
    // Direct to the mock, the bare proxy, Tollgate: the report's columns.
    let targets: [(Option<&Process>, SocketAddr); 3] = [
        (None, mock.addr),
        (Some(&bare), bare.addr),
        (Some(&gateway), gateway.addr),
    ];
    let urls = targets.map(|(_, addr)| format!("http://{addr}/v1/chat/completions"));
    for url in &urls {
        runtime.block_on(closed_loop(url, 32, Duration::from_secs(1))); // warm-up
    }
    // Each measurement is cut into rounds, and each round measures the
    // targets in turn, starting with a different one each time: a slow
    // spell of the host's, or the wake of the load before, then falls on
    // all three alike.
    let rounds = rounds();
    let slice = duration / rounds;
    let mut rows: Vec<Row> = urls.iter().map(|_| Row::default()).collect();
    for round in 0..rounds {
        let order: Vec<usize> = (0..urls.len())
            .map(|k| (k + round as usize) % urls.len())
            .collect();
        for &i in &order {
            rows[i]
                .c1
                .absorb(one_thread.block_on(closed_loop(&urls[i], 1, slice)));
        }
        for &i in &order {
            rows[i]
                .c32
                .absorb(runtime.block_on(closed_loop(&urls[i], 32, slice)));
        }
        for &i in &order {
            rows[i]
                .rate
                .absorb(one_thread.block_on(fixed_rate(&urls[i], 1000, slice)));
        }
        for &i in &order {
            let (ttfb, gaps) = one_thread.block_on(streaming(&urls[i], STREAMS_PER_ROUND));
            rows[i].ttfb.absorb(ttfb);
            rows[i].gaps.extend(gaps);
        }
        eprintln!("round {} of {rounds} measured", round + 1);
    }
    for (row, (process, _)) in rows.iter_mut().zip(&targets) {
        row.peak_rss_kb = process.map_or(0, |p| p.rss_kb("VmHWM:"));
    }
    let streams_rss = runtime.block_on(async {
        let url = format!("http://{}/v1/chat/completions", gateway.addr);
        let open = open_streams(&url, 1000).await;
        let rss = gateway.rss_kb("VmRSS:");
        (open.len(), rss)
    });
    let mut cores = pinned.map_or("the same cores".to_owned(), |list| format!("CPUs {list}"));
    if awake.is_some() {
        cores.push_str(", kept awake by a nice-19 spinner per core (`BENCH_AWAKE=1`)");
    }
    if let Some(ns) = guest_halt_poll_ns() {
        cores.push_str(&format!("; guest halt polling {} µs", ns / 1000));
    }
    let setup = format!(
        "{seconds} s per measurement, in {rounds} rounds that take the targets in turn; {} streams of {CHUNKS} chunks {} ms apart; every process on {cores}.\n",
        STREAMS_PER_ROUND * rounds as usize,
        chunk_gap().as_millis()
    );
    report(&rows, idle_rss, streams_rss, &setup);
}

fn report(rows: &[Row], idle_rss: u64, (streams, streams_rss): (usize, u64), setup: &str) {
    let bare = &rows[1];
    let direct = &rows[0];
    println!("{setup}");
    println!("| | direct to the mock | bare proxy | tollgate | tollgate / bare proxy |");
    println!("|---|---|---|---|---|");
    let line = |label: &str, f: &dyn Fn(&Row) -> f64, unit: &str| {
        let values: Vec<f64> = rows.iter().map(f).collect();
        let ratio = if values[1] > 0.0 {
            format!("{:.2}×", values[2] / values[1])
        } else {
            "".into()
        };
        println!(
            "| {label} | {:.0}{unit} | {:.0}{unit} | {:.0}{unit} | {ratio} |",
            values[0], values[1], values[2]
        );
    };
    line("requests/s, concurrency 1", &|r| r.c1.rps(), "");
    line("requests/s, concurrency 32", &|r| r.c32.rps(), "");
    line("p50 latency, concurrency 1", &|r| r.c1.pct(0.5), " µs");
    line("p99 latency, concurrency 1", &|r| r.c1.pct(0.99), " µs");
    line("p50 latency, concurrency 32", &|r| r.c32.pct(0.5), " µs");
    line("p99 latency, concurrency 32", &|r| r.c32.pct(0.99), " µs");
    line(
        "p50 latency at 1,000 requests/s",
        &|r| r.rate.pct(0.5),
        " µs",
    );
    line(
        "p99 latency at 1,000 requests/s",
        &|r| r.rate.pct(0.99),
        " µs",
    );
    line(
        "stream: p50 time to first chunk",
        &|r| r.ttfb.pct(0.5),
        " µs",
    );
    line("stream: mean gap between chunks", &Row::mean_gap, " µs");
    println!(
        "| peak RSS | | {} MB | {} MB | {:.2}× |",
        bare.peak_rss_kb / 1024,
        rows[2].peak_rss_kb / 1024,
        rows[2].peak_rss_kb as f64 / bare.peak_rss_kb.max(1) as f64
    );
    let added = |r: &Row| r.c1.pct(0.5) - direct.c1.pct(0.5);
    println!(
        "\nadded p50 over direct at concurrency 1: bare proxy {:.0} µs, tollgate {:.0} µs",
        added(bare),
        added(&rows[2])
    );
    println!(
        "added time to first chunk over direct: bare proxy {:.0} µs, tollgate {:.0} µs",
        bare.ttfb.pct(0.5) - direct.ttfb.pct(0.5),
        rows[2].ttfb.pct(0.5) - direct.ttfb.pct(0.5)
    );
    println!(
        "tollgate RSS: {} MB idle; {} MB with {streams} streams open",
        idle_rss / 1024,
        streams_rss / 1024
    );
    let errors: u64 = rows
        .iter()
        .map(|r| r.c1.errors + r.c32.errors + r.rate.errors + r.ttfb.errors)
        .sum();
    println!("errors: {errors}");
}

/// `Some` when `flag` is given, with the number after it if there is one.
fn flag_value(args: &[String], flag: &str) -> Option<Option<u64>> {
    let i = args.iter().position(|a| a == flag)?;
    Some(args.get(i + 1).and_then(|s| s.parse().ok()))
}

/// Two gateways side by side, A and B, at concurrency 32 for `rounds`
/// rounds of 2 s each on A, on B (in turns that swap the order each round)
/// and on the bare proxy, and the median of B/A. A is this build (or
/// `BENCH_TOLLGATE`); B is `BENCH_PAIR_TOLLGATE` (default: A's binary) with
/// the plugins of `BENCH_PAIR_PLUGINS` (default: none), so it compares two
/// builds, or one build with two versions of a plugin. On a VM whose speed
/// drifts by a tenth within a minute, short alternating runs of both are
/// what can see a difference of a few percent.
async fn pair_run(mock: &Process, bare: &Process, rounds: u64) {
    let a_binary = tollgate_binary();
    let b_binary = std::env::var_os("BENCH_PAIR_TOLLGATE")
        .map(|p| absolute(p).into_os_string())
        .unwrap_or_else(|| a_binary.clone());
    let b_plugins = std::env::var_os("BENCH_PAIR_PLUGINS").map(absolute);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = tollgate(mock.addr, a_dir.path(), &a_binary, None);
    let b = tollgate(mock.addr, b_dir.path(), &b_binary, b_plugins.as_deref());
    let url = |p: &Process| format!("http://{}/v1/chat/completions", p.addr);
    let (a_url, b_url, bare_url) = (url(&a), url(&b), url(bare));
    println!(
        "A: {}\nB: {}{}",
        a_binary.to_string_lossy(),
        b_binary.to_string_lossy(),
        b_plugins.map_or(String::new(), |p| format!(
            " with the plugins of {}",
            p.display()
        ))
    );
    let slice = Duration::from_secs(2);
    for target in [&a_url, &b_url, &bare_url] {
        closed_loop(target, 32, Duration::from_secs(1)).await; // warm-up
    }
    let mut ratios = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [&a_url, &b_url]
        } else {
            [&b_url, &a_url]
        };
        let first = closed_loop(order[0], 32, slice).await.rps();
        let second = closed_loop(order[1], 32, slice).await.rps();
        let (a_rps, b_rps) = if round % 2 == 0 {
            (first, second)
        } else {
            (second, first)
        };
        let bare_rps = closed_loop(&bare_url, 32, slice).await.rps();
        println!(
            "round {:>2}: A {a_rps:>6.0}  B {b_rps:>6.0}  bare {bare_rps:>6.0} requests/s   B/A {:.3}",
            round + 1,
            b_rps / a_rps
        );
        ratios.0.push(b_rps / a_rps);
        ratios.1.push(a_rps / bare_rps);
        ratios.2.push(b_rps / bare_rps);
    }
    println!(
        "median of {rounds} rounds: B/A {:.3}; A {:.2}× and B {:.2}× the bare proxy",
        median(&mut ratios.0),
        median(&mut ratios.1),
        median(&mut ratios.2)
    );
}

/// The same request as OpenAI chat, Anthropic Messages and OpenAI
/// Responses, to one gateway and the same upstream, in `rounds` rounds of
/// 1 s per protocol at concurrency 1 (p50 latency) and at 32 (throughput),
/// the order turning each round: what each inbound translation adds to
/// chat's path.
fn protocols_run(
    gateway: &Process,
    rounds: u64,
    runtime: &tokio::runtime::Runtime,
    one_thread: &tokio::runtime::Runtime,
) {
    let base = format!("http://{}/v1", gateway.addr);
    let targets = [
        ("chat", format!("{base}/chat/completions"), REQUEST),
        ("messages", format!("{base}/messages"), MESSAGES_REQUEST),
        ("responses", format!("{base}/responses"), RESPONSES_REQUEST),
    ];
    for (_, url, body) in &targets {
        let warm = runtime.block_on(closed_loop_with(url, body, 32, Duration::from_secs(1)));
        assert!(warm.errors == 0 && warm.requests > 0, "{url} failed");
    }
    let slice = Duration::from_secs(1);
    let mut c1: Vec<Sample> = targets.iter().map(|_| Sample::default()).collect();
    let mut c32: Vec<Sample> = c1.clone();
    for round in 0..rounds as usize {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            let (_, url, body) = &targets[i];
            c1[i].absorb(one_thread.block_on(closed_loop_with(url, body, 1, slice)));
            c32[i].absorb(runtime.block_on(closed_loop_with(url, body, 32, slice)));
        }
        eprintln!("round {} of {rounds} measured", round + 1);
    }
    println!(
        "| protocol | p50, concurrency 1 | added to chat | requests/s, concurrency 32 | / chat |"
    );
    println!("|---|---|---|---|---|");
    for (i, (name, _, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.0} µs | {:+.0} µs | {:.0} | {:.3} |",
            c1[i].pct(0.5),
            c1[i].pct(0.5) - c1[0].pct(0.5),
            c32[i].rps(),
            c32[i].rps() / c32[0].rps()
        );
    }
    let errors: u64 = c1.iter().chain(&c32).map(|s| s.errors).sum();
    println!("errors: {errors}");
}
