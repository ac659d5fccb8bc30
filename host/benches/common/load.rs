//! Load generators and what they measure: closed-loop clients at a fixed
//! concurrency, a fixed arrival rate, streams and their chunk gaps.

use super::REQUEST;
use std::time::{Duration, Instant};

#[derive(Default, Clone)]
pub(crate) struct Sample {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    /// Microseconds, sorted.
    pub(crate) latencies: Vec<u32>,
}

impl Sample {
    /// Adds `other`'s requests, time and latencies to this one's.
    pub(crate) fn absorb(&mut self, other: Sample) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    pub(crate) fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i] as f64
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .pool_max_idle_per_host(4096)
        .build()
        .unwrap()
}

/// `concurrency` clients in a closed loop for `duration`.
pub(crate) async fn closed_loop(url: &str, concurrency: usize, duration: Duration) -> Sample {
    closed_loop_with(url, REQUEST, concurrency, duration).await
}

/// [`closed_loop`] sending `body` (another protocol's request).
pub(crate) async fn closed_loop_with(
    url: &str,
    body: &'static str,
    concurrency: usize,
    duration: Duration,
) -> Sample {
    let client = client();
    let started = Instant::now();
    let stop = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while Instant::now() < stop {
                    let t = Instant::now();
                    match one_with(&client, &url, body).await {
                        true => {
                            sample.requests += 1;
                            sample.latencies.push(t.elapsed().as_micros() as u32);
                        }
                        false => sample.errors += 1,
                    }
                }
                sample
            })
        })
        .collect();
    merge(tasks, started).await
}

/// An open loop at `rate` requests a second for `duration`: latency as a
/// client arriving on schedule sees it.
pub(crate) async fn fixed_rate(url: &str, rate: u64, duration: Duration) -> Sample {
    let client = client();
    let started = Instant::now();
    let count = (rate as f64 * duration.as_secs_f64()) as u64;
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (client, url) = (client.clone(), url.to_owned());
            let at = started + Duration::from_nanos(i * 1_000_000_000 / rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let mut sample = Sample::default();
                let t = Instant::now();
                if one(&client, &url).await {
                    sample.requests = 1;
                    sample.latencies.push(t.elapsed().as_micros() as u32);
                } else {
                    sample.errors = 1;
                }
                sample
            })
        })
        .collect();
    merge(tasks, started).await
}

pub(crate) async fn merge(tasks: Vec<tokio::task::JoinHandle<Sample>>, started: Instant) -> Sample {
    let mut total = Sample::default();
    for task in tasks {
        let sample = task.await.unwrap();
        total.requests += sample.requests;
        total.errors += sample.errors;
        total.latencies.extend(sample.latencies);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.latencies.sort_unstable();
    total
}

pub(crate) async fn one(client: &reqwest::Client, url: &str) -> bool {
    one_with(client, url, REQUEST).await
}

async fn one_with(client: &reqwest::Client, url: &str, body: &'static str) -> bool {
    let Ok(response) = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    else {
        return false;
    };
    response.status().is_success() && response.bytes().await.is_ok_and(|b| b.len() > 100)
}

/// Time to the first chunk, and the gaps between chunks, µs, over `streams`
/// sequential streams.
pub(crate) async fn streaming(url: &str, streams: usize) -> (Sample, Vec<f64>) {
    let client = client();
    let body = REQUEST.replace("\"max_tokens\":16", "\"max_tokens\":16,\"stream\":true");
    let mut ttfb = Sample::default();
    let mut gaps = Vec::new();
    let started = Instant::now();
    for _ in 0..streams {
        let t = Instant::now();
        let Ok(mut response) = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        else {
            ttfb.errors += 1;
            continue;
        };
        let mut last = None;
        let mut first = true;
        while let Ok(Some(_)) = response.chunk().await {
            let now = Instant::now();
            if first {
                ttfb.latencies
                    .push(now.duration_since(t).as_micros() as u32);
                first = false;
            } else if let Some(last) = last {
                gaps.push(now.duration_since(last).as_micros() as f64);
            }
            last = Some(now);
        }
        ttfb.requests += 1;
    }
    ttfb.seconds = started.elapsed().as_secs_f64();
    ttfb.latencies.sort_unstable();
    (ttfb, gaps)
}

/// Opens `count` streams that stay open, and returns once each has
/// delivered its first chunk (the connections are kept by the caller).
pub(crate) async fn open_streams(url: &str, count: usize) -> Vec<reqwest::Response> {
    let client = client();
    let body = REQUEST.replace(
        "\"max_tokens\":16",
        "\"max_tokens\":16,\"stream\":true,\"user\":\"hold\"",
    );
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .ok()?;
                response.chunk().await.ok()??;
                Some(response)
            })
        })
        .collect();
    let mut open = Vec::new();
    for task in tasks {
        if let Some(response) = task.await.unwrap() {
            open.push(response);
        }
    }
    open
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
