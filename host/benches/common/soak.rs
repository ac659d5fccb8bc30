//! The soak (`just soak`): mixed load with faults for a long while, watching
//! that the gateway holds steady.
//!
//! 32 clients send, each in turn, whole and streamed requests and requests
//! whose upstream fails: a 500, a stream that goes silent past the idle
//! timeout, a stream that is not JSON, a stall past the response timeout. Some clients walk away from
//! their stream after the first chunk. The mock upstream reads the fault
//! from the request's text. Every 10 s the gateway's RSS, open file
//! descriptors and open connections are printed. It fails (exit 1) when a
//! request got no HTTP answer, when RSS grew by more than a fifth after the
//! first minute, or when file descriptors or open requests did not come back
//! down once the load stopped.

use super::load::client;
use super::processes::Process;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What each client sends, in turn: mostly plain requests, and one fault
/// of each kind in every twenty.
const MIX: &[Kind] = &[
    Kind::Whole,
    Kind::Stream,
    Kind::Whole,
    Kind::Fault("fault-500"),
    Kind::Whole,
    Kind::Stream,
    Kind::Whole,
    Kind::Fault("fault-break"),
    Kind::Whole,
    Kind::Stream,
    Kind::Whole,
    Kind::Fault("fault-garbage"),
    Kind::Whole,
    Kind::Stream,
    Kind::Whole,
    Kind::Leave,
    Kind::Whole,
    Kind::Stream,
    Kind::Whole,
    Kind::Fault("fault-stall"),
];

#[derive(Clone, Copy)]
enum Kind {
    Whole,
    Stream,
    /// A streamed request whose upstream misbehaves as the marker says.
    Fault(&'static str),
    /// A streamed request the client drops after its first chunk.
    Leave,
}

/// The fragment lines the soak's gateway needs: timeouts short enough for
/// the stalls to end.
pub(crate) const SOAK_TIMEOUTS: &str = "timeouts: { connect: 2, response: 2, idle: 2 }\n";

#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    ok: AtomicU64,
    failed_cleanly: AtomicU64,
    unanswered: AtomicU64,
}

/// Runs the soak for `secs` seconds at about `rate` requests a second.
pub(crate) async fn run(gateway: &Process, secs: u64, rate: u64) -> bool {
    let url = Arc::new(format!("http://{}/v1/chat/completions", gateway.addr));
    let metrics = format!("http://{}/metrics", gateway.addr);
    let counts = Arc::new(Counts::default());
    let stop = Instant::now() + Duration::from_secs(secs);
    // Each client paces itself so that 32 of them make `rate` a second.
    let pace = Duration::from_secs_f64(32.0 / rate.max(1) as f64);
    let clients: Vec<_> = (0..32)
        .map(|n| {
            let (url, counts) = (url.clone(), counts.clone());
            tokio::spawn(async move { client_loop(&url, n, stop, pace, &counts).await })
        })
        .collect();
    let fds_idle = gateway.fds();
    println!(
        "soak: {secs} s, 32 clients at about {rate} requests/s, one in twenty of each fault; idle: RSS {} MB, {fds_idle} fds",
        gateway.rss_kb("VmRSS:") / 1024
    );
    let started = Instant::now();
    let mut rss = Vec::new();
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let open = gauge(&metrics, "connections_open").await;
        let kb = gateway.rss_kb("VmRSS:");
        rss.push((started.elapsed().as_secs(), kb));
        println!(
            "{:>5} s  RSS {:>4} MB  fds {:>4}  connections {:>4}  answered {:>8}",
            started.elapsed().as_secs(),
            kb / 1024,
            gateway.fds(),
            open,
            counts.answered.load(Ordering::Relaxed)
        );
    }
    for client in clients {
        client.await.unwrap();
    }
    // Let the last streams and connections close.
    tokio::time::sleep(Duration::from_secs(3)).await;
    report(gateway, &metrics, &counts, &rss, fds_idle).await
}

async fn client_loop(url: &str, n: usize, stop: Instant, pace: Duration, counts: &Counts) {
    let client = client();
    let mut turn = n;
    while Instant::now() < stop {
        let kind = MIX[turn % MIX.len()];
        turn += 1;
        one(&client, url, kind, counts).await;
        tokio::time::sleep(pace).await;
    }
}

/// One request of `kind`; counts whether it got an HTTP answer.
async fn one(client: &reqwest::Client, url: &str, kind: Kind, counts: &Counts) {
    let (content, stream) = match kind {
        Kind::Whole => ("hello", false),
        Kind::Stream | Kind::Leave => ("hello", true),
        Kind::Fault(marker) => (marker, true),
    };
    let body = format!(
        r#"{{"model":"bench-chat","stream":{stream},"messages":[{{"role":"user","content":"{content}"}}],"max_tokens":16}}"#
    );
    let response = match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    counts.answered.fetch_add(1, Ordering::Relaxed);
    let status = response.status();
    if let Kind::Leave = kind {
        let mut response = response;
        let _ = response.chunk().await;
        return;
    }
    let text = response.text().await.unwrap_or_default();
    let whole = !stream || text.contains("[DONE]");
    if status.is_success() && whole && !text.contains("\"error\"") {
        counts.ok.fetch_add(1, Ordering::Relaxed);
    } else if text.contains("\"error\"") {
        counts.failed_cleanly.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.unanswered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn gauge(metrics: &str, name: &str) -> i64 {
    let text = match reqwest::get(metrics).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return -1,
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("tollgate_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

async fn report(
    gateway: &Process,
    metrics: &str,
    counts: &Counts,
    rss: &[(u64, u64)],
    fds_idle: usize,
) -> bool {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let after_warmup: Vec<u64> = rss.iter().filter(|(s, _)| *s >= 60).map(|r| r.1).collect();
    let (first, last) = (
        after_warmup.first().copied().unwrap_or(0),
        after_warmup.last().copied().unwrap_or(0),
    );
    let peak = after_warmup.iter().copied().max().unwrap_or(0);
    let fds_after = gateway.fds();
    let in_flight = gauge(metrics, "requests_in_flight").await;
    let connections = gauge(metrics, "connections_open").await;
    println!(
        "answered {} (served {}, failed with an error body {}), unanswered {}",
        load(&counts.answered),
        load(&counts.ok),
        load(&counts.failed_cleanly),
        load(&counts.unanswered)
    );
    println!(
        "RSS after the first minute: {} MB, then {} MB at the end (peak {} MB); fds {fds_idle} idle, {fds_after} after; in flight after: {in_flight} (the scrape), connections {connections}",
        first / 1024,
        last / 1024,
        peak / 1024
    );
    let mut ok = true;
    if load(&counts.unanswered) > 0 {
        println!("FAIL: requests without an HTTP answer");
        ok = false;
    }
    if first > 0 && last > first + first / 5 {
        println!("FAIL: RSS grew by more than a fifth after the first minute");
        ok = false;
    }
    if fds_after > fds_idle + 8 {
        println!("FAIL: file descriptors did not come back down");
        ok = false;
    }
    if in_flight != 1 {
        println!("FAIL: requests still in flight after the load");
        ok = false;
    }
    ok
}
