//! The mock providers of the simulated day: an independent count of each
//! provider's free-tier limits (exact sliding logs, Cerebras' token buckets,
//! calendar days and months, HF's credit), and the HTTP mock that answers
//! 429 when that count says so. Written apart from the ledger, so the day
//! checks the ledger against something it does not share code with.

use super::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tollgate::clock::{self, Clock, DAY_MS, HOUR_MS, MINUTE_MS, ManualClock};
use tollgate::config::{Catalog, Limits, WindowStyle};

// ---------------------------------------------------------------- the truth

/// What one request costs, by the provider's own count. Token limits admit
/// a request on its prompt plus its `max_tokens` when it sets one (as OpenAI
/// documents), then count what it really used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cost {
    pub(crate) tokens: u64,
    /// Tokens and cost the admission check charges.
    pub(crate) admit_tokens: u64,
    pub(crate) micro_usd: u64,
    pub(crate) admit_micro_usd: u64,
}

/// A provider-side limit, enforced exactly as documented.
pub(crate) enum Enforced {
    /// At most `limit` within any `period`: an exact log.
    Log {
        period: u64,
        limit: u64,
        tokens: bool,
        events: VecDeque<(u64, u64)>,
    },
    /// Continuously refilling bucket (Cerebras).
    Bucket {
        period: u64,
        limit: u64,
        tokens: bool,
        level: f64,
        at: u64,
    },
    /// Resets at UTC midnight, or on the 1st of the month.
    Calendar {
        monthly: bool,
        limit: u64,
        what: What,
        period: u64,
        used: u64,
    },
}

#[derive(Clone, Copy)]
pub(crate) enum What {
    Requests,
    Tokens,
    Credit,
}

impl Enforced {
    pub(crate) fn amount(what: What, cost: Cost) -> u64 {
        match what {
            What::Requests => 1,
            What::Tokens => cost.tokens,
            What::Credit => cost.micro_usd,
        }
    }

    pub(crate) fn fits(&mut self, now: u64, cost: Cost) -> bool {
        match self {
            Enforced::Log {
                period,
                limit,
                tokens,
                events,
            } => {
                while events.front().is_some_and(|(t, _)| now - t >= *period) {
                    events.pop_front();
                }
                let used: u64 = events.iter().map(|(_, n)| n).sum();
                used + if *tokens { cost.admit_tokens } else { 1 } <= *limit
            }
            Enforced::Bucket {
                period,
                limit,
                tokens,
                level,
                at,
            } => {
                *level = (*level - (now - *at) as f64 * *limit as f64 / *period as f64).max(0.0);
                *at = now;
                *level + (if *tokens { cost.admit_tokens } else { 1 }) as f64 <= *limit as f64
            }
            Enforced::Calendar {
                monthly,
                limit,
                what,
                period,
                used,
            } => {
                let current = if *monthly {
                    clock::month_start(now, 1)
                } else {
                    now - now % DAY_MS
                };
                if current != *period {
                    *period = current;
                    *used = 0;
                }
                let admit = match what {
                    What::Requests => 1,
                    What::Tokens => cost.admit_tokens,
                    What::Credit => cost.admit_micro_usd,
                };
                *used + admit <= *limit
            }
        }
    }

    pub(crate) fn count(&mut self, now: u64, cost: Cost) {
        match self {
            Enforced::Log { tokens, events, .. } => {
                events.push_back((now, if *tokens { cost.tokens } else { 1 }))
            }
            Enforced::Bucket { tokens, level, .. } => {
                *level += (if *tokens { cost.tokens } else { 1 }) as f64
            }
            Enforced::Calendar { what, used, .. } => *used += Self::amount(*what, cost),
        }
    }
}

pub(crate) fn enforced(limits: &Limits, style: WindowStyle) -> Vec<Enforced> {
    let rolling = |period, limit, tokens| match style {
        WindowStyle::Sliding => Enforced::Log {
            period,
            limit,
            tokens,
            events: VecDeque::new(),
        },
        WindowStyle::Bucket => Enforced::Bucket {
            period,
            limit,
            tokens,
            level: 0.0,
            at: DAY_START,
        },
    };
    let calendar = |monthly, limit, what| Enforced::Calendar {
        monthly,
        limit,
        what,
        period: 0,
        used: 0,
    };
    let mut out = Vec::new();
    let pairs = [
        (limits.rpm, MINUTE_MS, false),
        (limits.rph, HOUR_MS, false),
        (limits.tpm, MINUTE_MS, true),
        (limits.tph, HOUR_MS, true),
    ];
    for (limit, period, tokens) in pairs {
        if let Some(limit) = limit {
            out.push(rolling(period, limit, tokens));
        }
    }
    let calendars = [
        (limits.rpd, false, What::Requests),
        (limits.tpd, false, What::Tokens),
        (limits.rpmonth, true, What::Requests),
        (limits.tpmonth, true, What::Tokens),
    ];
    for (limit, monthly, what) in calendars {
        if let Some(limit) = limit {
            out.push(calendar(monthly, limit, what));
        }
    }
    if let Some(credit) = limits.credit_usd {
        out.push(calendar(true, (credit * 1e6) as u64, What::Credit));
    }
    out
}

/// Every provider's and model's enforced limits.
pub(crate) struct Truth {
    /// Keyed by provider, and by "provider/model".
    pub(crate) limits: HashMap<String, Vec<Enforced>>,
    pub(crate) prices: HashMap<String, tollgate::config::Price>,
}

impl Truth {
    pub(crate) fn new(catalog: &Catalog) -> Self {
        let mut limits = HashMap::new();
        let mut prices = HashMap::new();
        for provider in &catalog.providers {
            limits.insert(
                provider.name.clone(),
                enforced(&provider.limits, provider.quota.windows),
            );
        }
        for model in &catalog.models {
            let key = format!("{}/{}", model.provider.name, model.model);
            limits.insert(
                key.clone(),
                enforced(&model.limits, model.provider.quota.windows),
            );
            if let Some(price) = &model.price {
                prices.insert(key, price.clone());
            }
        }
        Truth { limits, prices }
    }

    pub(crate) fn cost(&self, provider: &str, model: &str, tokens: Tokens) -> Cost {
        let price = self.prices.get(&format!("{provider}/{model}"));
        let cost = |completion| price.map_or(0, |p| p.micro_usd(tokens.prompt, completion));
        Cost {
            tokens: tokens.prompt + tokens.completion,
            admit_tokens: tokens.prompt + tokens.cap.unwrap_or(0),
            micro_usd: cost(tokens.completion),
            admit_micro_usd: cost(tokens.cap.unwrap_or(0)),
        }
    }

    /// Whether the provider would accept, and if `count`, counts it.
    pub(crate) fn admit(
        &mut self,
        provider: &str,
        model: &str,
        now: u64,
        cost: Cost,
        count: bool,
    ) -> bool {
        let keys = [provider.to_owned(), format!("{provider}/{model}")];
        let fits = keys.iter().all(|key| {
            self.limits
                .get_mut(key)
                .is_none_or(|windows| windows.iter_mut().all(|w| w.fits(now, cost)))
        });
        if fits && count {
            for key in &keys {
                if let Some(windows) = self.limits.get_mut(key) {
                    windows.iter_mut().for_each(|w| w.count(now, cost));
                }
            }
        }
        fits
    }
}

// ---------------------------------------------------------------- the mocks

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) answered: u64,
    pub(crate) rejected_429: u64,
}

pub(crate) struct Upstream {
    pub(crate) clock: ManualClock,
    pub(crate) truth: Mutex<Truth>,
    pub(crate) tally: Mutex<BTreeMap<String, Tally>>,
}

/// A request's tokens by the provider's count.
#[derive(Clone, Copy)]
pub(crate) struct Tokens {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    pub(crate) cap: Option<u64>,
}

/// The tokens a request really uses: a quarter token per byte of content,
/// and a reply length drawn from the request itself.
pub(crate) fn actual_tokens(body: &Value) -> Tokens {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let bytes: usize = messages
        .iter()
        .map(|m| m["content"].as_str().map_or(0, str::len))
        .sum();
    let prompt = bytes as u64 / 4 + 3 * messages.len() as u64;
    let seed = body["seed"].as_u64().unwrap_or(0);
    let wanted = 20 + seed % 380;
    let cap = body["max_tokens"].as_u64();
    let completion = cap.map_or(wanted, |cap| wanted.min(cap));
    Tokens {
        prompt,
        completion,
        cap,
    }
}

pub(crate) async fn answer(
    upstream: Arc<Upstream>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let provider = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let body = request.into_body().collect().await?.to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let tokens = actual_tokens(&body);
    let (prompt, completion) = (tokens.prompt, tokens.completion);
    let now = upstream.clock.now_ms();
    let admitted = {
        let mut truth = upstream.truth.lock().unwrap();
        let cost = truth.cost(&provider, &model, tokens);
        truth.admit(&provider, &model, now, cost, true)
    };
    let mut tally = upstream.tally.lock().unwrap();
    let entry = tally.entry(provider).or_default();
    if !admitted {
        entry.rejected_429 += 1;
        let body = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        return Ok(Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    entry.answered += 1;
    let reply = json!({
        "id": "chatcmpl-sim", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .unwrap())
}

pub(crate) async fn start_upstream(upstream: Arc<Upstream>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            stream.set_nodelay(true).ok();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |r| answer(upstream.clone(), r));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
