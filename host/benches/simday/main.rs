//! A simulated day of traffic through the real router, adapter plugin and
//! quota ledger, against mock providers that enforce the catalogue's
//! free-tier limits themselves (an independent implementation: exact sliding
//! logs, Cerebras' token buckets, calendar days and months, HF's credit).
//!
//! The clock is simulated: the driver moves it to each arrival, so a day
//! runs in seconds and every number is reproducible. It reports what the
//! issue asks of the ledger: requests served, 429s the mocks had to send
//! (goal: zero), requests that went past the free tier while a free
//! candidate still had room by the mock's own count (goal: zero), and what
//! the ledger costs per request next to the whole request in the same run.
//!
//! Run with `cargo bench -p tollgate --bench simday` (or `just simday`).

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tollgate::clock::{self, MINUTE_MS, ManualClock};
use tollgate::config::env::Env;
use tollgate::config::{Catalog, Tier};
use tollgate::ledger::estimate::{Estimate, Messages};
use tollgate::ledger::headers::RateHeaders;
use tollgate::ledger::{Backend, Ledger, Outcome};
use tollgate::plugins::PluginRuntime;
use tollgate::plugins::bindings::{ClientRequest, Mode};
use tollgate::route::{Gateway, Inbound};

/// Midnight UTC, 2026-11-25: the simulated day.
const DAY_START: u64 = 1_795_564_800_000;
/// Requests over the day; peaks at about three times the mean rate.
const REQUESTS: usize = 60_000;

/// The aliases clients ask for, and how often (out of 100).
const MIX: &[(&str, u32)] = &[
    ("groq-llama-3.3-70b", 30),
    ("groq-llama-3.1-8b", 30),
    ("cerebras-qwen3-235b", 10),
    ("or-llama-3.3-70b", 5),
    ("hf-llama-3.1-8b", 5),
    ("mistral-small", 10),
    ("cohere-command-r", 5),
    ("groq-gpt-oss-120b", 5),
];

mod upstream;
use upstream::*;

// ---------------------------------------------------------------- the day

/// xorshift64*: a reproducible day without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Arrival instants over the day: quiet nights, a peak in the afternoon.
fn arrivals(rng: &mut Rng) -> Vec<u64> {
    let weight = |minute: u64| {
        let hour = minute as f64 / 60.0;
        let day = ((hour - 7.0) / 14.0 * std::f64::consts::PI).sin().max(0.0);
        0.25 + 1.75 * day
    };
    let total: f64 = (0..1440).map(weight).sum();
    let mut times = Vec::with_capacity(REQUESTS);
    for minute in 0..1440 {
        let n = (weight(minute) / total * REQUESTS as f64).round() as u64;
        for _ in 0..n {
            times.push(DAY_START + minute * MINUTE_MS + rng.below(MINUTE_MS));
        }
    }
    times.sort_unstable();
    times
}

#[derive(Deserialize)]
struct Envelope {
    messages: Messages,
    #[serde(default)]
    max_tokens: Option<u64>,
}

fn request_body(rng: &mut Rng) -> (String, String) {
    let pick = rng.below(100) as u32;
    let mut acc = 0;
    let alias = MIX
        .iter()
        .find(|(_, share)| {
            acc += share;
            pick < acc
        })
        .map_or(MIX[0].0, |(alias, _)| alias);
    let words = 10 + rng.below(300) as usize;
    let content = "lorem ipsum ".repeat(words / 2);
    let mut body = json!({
        "model": alias,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
        "seed": rng.next() >> 1,
    });
    match rng.below(3) {
        0 => {}
        1 => body["max_tokens"] = 256.into(),
        _ => body["max_tokens"] = 1024.into(),
    }
    (alias.to_owned(), body.to_string())
}

/// Providers left off: a user on free tiers with a paid key and no
/// subscription boxes, so overflow reaches a paid provider.
const LEFT_OFF: &[&str] = &["CLAUDEBOX", "PIBOX"];

/// A copy of the shipped catalogue with every provider (but [`LEFT_OFF`])
/// enabled and pointed at the mock.
fn catalogue(mock: std::net::SocketAddr, dir: &std::path::Path, limits: bool) -> (Catalog, Env) {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../providers");
    let mut env = Vec::new();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut name = String::new();
        let mut out = String::new();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("name: ") {
                name = n.trim().to_owned();
            }
            if let Some(flag) = line.strip_prefix("flag: ")
                && !LEFT_OFF.iter().any(|off| flag.trim().starts_with(off))
            {
                env.push((flag.trim().to_owned(), "1".to_owned()));
            }
            if let Some(key) = line.strip_prefix("api_key: ${") {
                env.push((key.trim_end_matches('}').to_owned(), "sk-sim".to_owned()));
            }
            if line.starts_with("base_url: ") {
                out.push_str(&format!("base_url: http://{mock}/{name}/v1\n"));
            } else if limits {
                out.push_str(line);
                out.push('\n');
            } else {
                out.push_str(&without_limits(line));
                out.push('\n');
            }
        }
        std::fs::write(dir.join(path.file_name().unwrap()), out).unwrap();
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let env = Env::from_pairs(&pairs);
    let catalog =
        Catalog::load(dir, &env, &|a| a == "openai").expect("the shipped catalogue loads");
    (catalog, env)
}

/// A fragment line with its `limits: { … }` taken out.
fn without_limits(line: &str) -> String {
    let Some(start) = line.find("limits: {") else {
        return line.to_owned();
    };
    let end = start
        + line[start..]
            .find('}')
            .map_or(line.len() - start, |i| i + 1);
    let before = line[..start].trim_end().trim_end_matches(',');
    let after = line[end..].trim_start_matches(',');
    if before.trim().is_empty() && after.trim().is_empty() {
        String::new()
    } else {
        format!("{before}{after}")
    }
}

#[derive(Default)]
struct Day {
    served: u64,
    failed: u64,
    by_tier: BTreeMap<&'static str, u64>,
    beyond_free_with_headroom: u64,
    skipped: u64,
}

/// Runs the day. With `ledger` false the gateway is given the catalogue
/// without its limits, so it learns of them only from 429s, as gateways that
/// hop after a 429 do; the mocks enforce the real limits either way.
async fn simulate(ledger: bool) -> (Day, BTreeMap<String, Tally>, f64) {
    let clock = ManualClock::at(DAY_START);
    let data = tempfile::tempdir().unwrap();
    // The truth needs the catalogue and the catalogue needs the mock's
    // address: start the mock with an empty truth, then fill it in.
    let upstream = Arc::new(Upstream {
        clock: clock.clone(),
        truth: Mutex::new(Truth {
            limits: HashMap::new(),
            prices: HashMap::new(),
        }),
        tally: Mutex::new(BTreeMap::new()),
    });
    let addr = start_upstream(upstream.clone()).await;
    let (catalog, _) = catalogue(addr, data.path(), ledger);
    // The mocks and the verdicts use the real limits.
    let (check, _) = catalogue(
        addr,
        &{
            let d = data.path().join("check");
            std::fs::create_dir_all(&d).unwrap();
            d
        },
        true,
    );
    *upstream.truth.lock().unwrap() = Truth::new(&check);
    let plugins = PluginRuntime::load(Default::default(), None, Some(data.path().join("cache")))
        .await
        .unwrap();
    let ledger = Ledger::new(Backend::Memory, Arc::new(clock.clone())).unwrap();
    let leases = tollgate::gpu::Leases::new(tollgate::gpu::device::Device::unknown());
    let gateway = Arc::new(Gateway::new(catalog, plugins, ledger, leases).unwrap());

    let mut rng = Rng(0x0005_EED0_FDA7);
    let times = arrivals(&mut rng);
    let mut day = Day::default();
    let started = Instant::now();
    let mut i = 0;
    while i < times.len() {
        // Requests arriving in the same millisecond go concurrently.
        let now = times[i];
        clock.set(now);
        let mut batch = Vec::new();
        while i < times.len() && times[i] == now {
            let (alias, body) = request_body(&mut rng);
            let envelope: Envelope = serde_json::from_str(&body).unwrap();
            let estimate = Estimate::new(envelope.messages.0, None, envelope.max_tokens);
            let request = ClientRequest {
                mode: Mode::Chat,
                body: body.clone(),
                stream: false,
                uploads: Vec::new(),
            };
            let gateway = gateway.clone();
            batch.push(async move {
                let response = gateway
                    .serve(&alias, &Inbound::json(request, estimate))
                    .await;
                (alias, body, response)
            });
            i += 1;
        }
        for (alias, body, response) in futures_util::future::join_all(batch).await {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            if let Some(skipped) = header("x-tollgate-skipped") {
                day.skipped += skipped.split(", ").count() as u64;
            }
            if !response.status().is_success() {
                day.failed += 1;
                continue;
            }
            day.served += 1;
            let served_by = header("x-tollgate-provider").unwrap();
            let model = check.candidates(&served_by).into_iter().next().unwrap();
            *day.by_tier.entry(model.tier.as_str()).or_default() += 1;
            if model.tier != Tier::Free {
                let body: Value = serde_json::from_str(&body).unwrap();
                let tokens = actual_tokens(&body);
                let mut truth = upstream.truth.lock().unwrap();
                let room: Vec<String> = check
                    .candidates(&alias)
                    .iter()
                    .filter(|m| m.tier == Tier::Free)
                    .filter(|m| {
                        let cost = truth.cost(&m.provider.name, &m.model, tokens);
                        truth.admit(&m.provider.name, &m.model, now, cost, false)
                    })
                    .map(|m| m.alias.clone())
                    .collect();
                if !room.is_empty() && std::env::var_os("SIMDAY_DEBUG").is_some() {
                    eprintln!(
                        "{} {alias} -> {served_by}: room on {room:?}; skipped {:?}",
                        clock::rfc3339(now),
                        header("x-tollgate-skipped")
                    );
                }
                day.beyond_free_with_headroom += u64::from(!room.is_empty());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *upstream.tally.lock().unwrap());
    (day, tally, elapsed)
}

/// Nanoseconds per reserve + settle on a plan with four model windows and
/// one provider window, on `tasks` concurrent tasks.
fn ledger_cost(tasks: usize, ops: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: p\nflag: P\nadapter: openai\nbase_url: http://127.0.0.1:9/v1\ntier: free\nlimits: { rpd: 1000000000 }\nmodels:\n  - { alias: m, model: m, mode: chat, limits: { rpm: 1000000000, rpd: 1000000000, tpm: 1000000000000, tpd: 1000000000000 } }\n",
    )
    .unwrap();
    let catalog = Catalog::load(dir.path(), &Env::from_pairs(&[("P", "1")]), &|_| true).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(tasks.max(1))
        .build()
        .unwrap();
    runtime.block_on(async {
        let clock = ManualClock::at(DAY_START);
        let ledger = Ledger::new(Backend::Memory, Arc::new(clock.clone())).unwrap();
        let plan = ledger.plan(catalog.models.first().unwrap());
        let estimate = Estimate {
            prompt_tokens: 100,
            completion_cap: Some(200),
        };
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (ledger, plan, clock) = (ledger.clone(), plan.clone(), clock.clone());
                tokio::spawn(async move {
                    let none = RateHeaders::default();
                    for _ in 0..ops / tasks {
                        clock.advance(1);
                        let reservation = ledger.reserve(&plan, &estimate).await.unwrap();
                        reservation
                            .settle(
                                Outcome::Served {
                                    usage: Some((90, 120)),
                                },
                                &none,
                            )
                            .await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        started.elapsed().as_nanos() as f64 / ops as f64
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (blind, blind_tally, blind_elapsed) = runtime.block_on(simulate(false));
    let blind_rejected: u64 = blind_tally.values().map(|t| t.rejected_429).sum();
    let (day, tally, elapsed) = runtime.block_on(simulate(true));
    let rejected: u64 = tally.values().map(|t| t.rejected_429).sum();
    let per_request_us = elapsed * 1e6 / (day.served + day.failed) as f64;
    let one = ledger_cost(1, 1_000_000);
    let two = ledger_cost(2, 1_000_000);

    println!(
        "Simulated day: {} requests through the real router, adapter and ledger",
        day.served + day.failed
    );
    println!(
        "against mocks enforcing the catalogue's free-tier limits ({:.1} s of wall time;",
        elapsed
    );
    println!(
        "every provider enabled but the subscription boxes, so overflow goes to paid ones).\n"
    );
    println!("| measure | with the ledger | limits unknown, hop after 429 |");
    println!("|---|---|---|");
    println!(
        "| requests served | {} of {} | {} of {} |",
        day.served,
        day.served + day.failed,
        blind.served,
        blind.served + blind.failed
    );
    println!("| 429s sent by the mock providers | {rejected} | {blind_rejected} |");
    println!(
        "| requests that reached a paid (or local) provider while a free one had room | {} | {} |",
        day.beyond_free_with_headroom, blind.beyond_free_with_headroom
    );
    let tiers: std::collections::BTreeSet<_> =
        day.by_tier.keys().chain(blind.by_tier.keys()).collect();
    for tier in tiers {
        let n = |d: &Day| d.by_tier.get(tier).copied().unwrap_or(0);
        println!("| served by {tier} tier | {} | {} |", n(&day), n(&blind));
    }
    println!(
        "| candidates skipped without a network call (no room, or cooling down) | {} | {} |",
        day.skipped, blind.skipped
    );
    println!(
        "| wall time of the simulated day | {:.1} s | {:.1} s |",
        elapsed, blind_elapsed
    );
    println!("\n| ledger cost | value |");
    println!("|---|---|");
    println!("| ledger reserve + settle, 1 task | {:.0} ns |", one);
    println!(
        "| ledger reserve + settle, 2 tasks on one plan | {:.0} ns |",
        two
    );
    println!(
        "| whole request in this run (router, policy and adapter plugins, HTTP to mock) | {:.0} µs |",
        per_request_us
    );
    println!(
        "| ledger share of a request | {:.2}% |",
        one / (per_request_us * 1e3) * 100.0
    );
    println!("\nPer provider (answered / 429):");
    for (provider, t) in &tally {
        println!("  {provider:<12} {:>6} / {}", t.answered, t.rejected_429);
    }
    if rejected > 0 || day.beyond_free_with_headroom > 0 || day.failed > 0 {
        std::process::exit(1);
    }
}
