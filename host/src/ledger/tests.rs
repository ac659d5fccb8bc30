//! The ledger as the router uses it: plans from a real catalogue, a manual
//! clock, reservations settled with real outcomes and headers.

use super::*;
use crate::config::Catalog;
use crate::config::env::Env;
use clock::{MINUTE_MS, ManualClock, SECOND_MS, utc};

const FRAGMENT: &str = r#"
name: free
flag: FREE
adapter: openai
base_url: https://free.example/v1
api_key: ${FREE_KEY}
tier: free
limits: { rpm: 3 }
models:
  - { alias: small, model: small-1, mode: chat, limits: { rpd: 5, tpm: 1000 } }
  - { alias: big, model: big-1, mode: chat }
"#;

const CREDIT: &str = r#"
name: credit
flag: CREDIT
adapter: openai
base_url: https://credit.example/v1
tier: free
limits: { credit_usd: 0.01 }
models:
  - { alias: priced, model: priced-1, mode: chat, price: { input_per_mtok: 1000, output_per_mtok: 1000 } }
"#;

const UNDECLARED: &str = r#"
name: learn
flag: LEARN
adapter: openai
base_url: https://learn.example/v1
tier: free
models:
  - { alias: learn-chat, model: learn-1, mode: chat }
"#;

struct Fixture {
    catalog: Catalog,
    clock: ManualClock,
    ledger: Arc<Ledger>,
}

fn fixture(backend: Backend, clock: ManualClock) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("free.yaml"), FRAGMENT).unwrap();
    std::fs::write(dir.path().join("credit.yaml"), CREDIT).unwrap();
    std::fs::write(dir.path().join("learn.yaml"), UNDECLARED).unwrap();
    let env = Env::from_pairs(&[
        ("FREE", "1"),
        ("FREE_KEY", "sk-test"),
        ("CREDIT", "1"),
        ("LEARN", "1"),
    ]);
    let catalog = Catalog::load(dir.path(), &env, &|a| a == "openai").unwrap();
    let ledger = Ledger::new(backend, Arc::new(clock.clone())).unwrap();
    Fixture {
        catalog,
        clock,
        ledger,
    }
}

impl Fixture {
    fn plan(&self, alias: &str) -> Arc<Plan> {
        self.ledger.plan(self.catalog.model(alias).unwrap())
    }

    /// Reserves one attempt (which must fit) and settles it.
    async fn attempt(
        &self,
        plan: &Arc<Plan>,
        estimate: &Estimate,
        outcome: Outcome,
        headers: &RateHeaders,
    ) {
        let reservation = self.ledger.reserve(plan, estimate).await.unwrap();
        reservation.settle(outcome, headers).await;
    }
}

fn small_request() -> Estimate {
    Estimate {
        prompt_tokens: 10,
        completion_cap: Some(90),
    }
}

fn served(prompt: u64, completion: u64) -> Outcome {
    Outcome::Served {
        usage: Some((prompt, completion)),
    }
}

#[tokio::test]
async fn provider_and_model_limits_both_apply() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let small = f.plan("small");
    let big = f.plan("big");
    let none = RateHeaders::default();
    // rpm 3 is provider-wide: two on one model and one on the other use it up.
    for plan in [&small, &small, &big] {
        f.attempt(plan, &small_request(), served(10, 5), &none)
            .await;
    }
    let denial = f
        .ledger
        .reserve(&big, &small_request())
        .await
        .err()
        .unwrap();
    assert!(
        denial
            .to_string()
            .contains("the rpm limit of free is used up (3 requests of 3 requests)"),
        "{denial}"
    );
    // A minute later the provider window has room; the model's day has 3 left.
    f.clock.advance(MINUTE_MS + SECOND_MS);
    for _ in 0..3 {
        f.attempt(&small, &small_request(), served(10, 5), &none)
            .await;
    }
    f.clock.advance(MINUTE_MS + SECOND_MS);
    let denial = f
        .ledger
        .reserve(&small, &small_request())
        .await
        .err()
        .unwrap();
    match &denial {
        Denial::Full { window, full, .. } => {
            assert_eq!(*window, "rpd");
            assert_eq!(full.frees_at, Some(utc(2026, 11, 26, 0, 0)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tokens_are_estimated_then_replaced_by_real_usage() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let small = f.plan("small");
    let none = RateHeaders::default();
    let big_request = Estimate {
        prompt_tokens: 100,
        completion_cap: Some(400),
    };
    let first = f.ledger.reserve(&small, &big_request).await.unwrap();
    let second = f.ledger.reserve(&small, &big_request).await.unwrap();
    // 1000 tpm: two in-flight estimates of 500 fill it.
    assert!(matches!(
        f.ledger.reserve(&small, &small_request()).await,
        Err(Denial::Full { window: "tpm", .. })
    ));
    first.settle(served(100, 20), &none).await;
    second.settle(Outcome::NotSent, &none).await;
    // 120 used now, so an estimate of 500 fits again.
    let report = f.ledger.report().await;
    let tpm = report.quotas.iter().find(|r| r.window == "tpm").unwrap();
    assert_eq!(tpm.used, Some(120.0));
    let rpd = report.quotas.iter().find(|r| r.window == "rpd").unwrap();
    assert_eq!(rpd.used, Some(1.0), "a request never sent is not counted");
    assert!(f.ledger.reserve(&small, &big_request).await.is_ok());
}

#[tokio::test]
async fn a_request_larger_than_the_limit_is_skipped_with_the_reason() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let huge = Estimate {
        prompt_tokens: 5_000,
        completion_cap: None,
    };
    let denial = f
        .ledger
        .reserve(&f.plan("small"), &huge)
        .await
        .err()
        .unwrap();
    assert!(
        denial
            .to_string()
            .contains("needs about 5000 tokens, more than the tpm limit"),
        "{denial}"
    );
}

#[tokio::test]
async fn an_absurd_max_tokens_saturates_instead_of_wrapping_under_the_limit() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    // 10 prompt tokens plus a cap of u64::MAX - 5 would wrap to 4 tokens.
    let absurd = Estimate {
        prompt_tokens: 10,
        completion_cap: Some(u64::MAX - 5),
    };
    let denial = f
        .ledger
        .reserve(&f.plan("small"), &absurd)
        .await
        .err()
        .expect("a request of ~u64::MAX tokens must not fit a tpm of 1000");
    assert!(
        denial.to_string().contains("more than the tpm limit"),
        "{denial}"
    );
}

#[tokio::test]
async fn a_429_cools_the_model_until_the_stated_reset() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let big = f.plan("big");
    let small = f.plan("small");
    let headers = RateHeaders::parse([("retry-after", "7")], f.clock.now_ms());
    f.attempt(&big, &small_request(), Outcome::RateLimited, &headers)
        .await;
    let denial = f
        .ledger
        .reserve(&big, &small_request())
        .await
        .err()
        .unwrap();
    assert_eq!(denial.retry_at(), Some(f.clock.now_ms() + 7_000));
    assert!(
        denial
            .to_string()
            .contains("free/big-1 is cooling down after a 429"),
        "{denial}"
    );
    // Another model of the same provider is not affected.
    assert!(f.ledger.reserve(&small, &small_request()).await.is_ok());
    f.clock.advance(7_000);
    assert!(f.ledger.reserve(&big, &small_request()).await.is_ok());
}

#[tokio::test]
async fn a_429_without_headers_backs_off_exponentially_and_bounded() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let big = f.plan("big");
    let none = RateHeaders::default();
    let mut waits = Vec::new();
    for _ in 0..12 {
        f.attempt(&big, &small_request(), Outcome::RateLimited, &none)
            .await;
        let until = f
            .ledger
            .reserve(&big, &small_request())
            .await
            .err()
            .unwrap()
            .retry_at()
            .unwrap();
        waits.push(until - f.clock.now_ms());
        f.clock.set(until + 60 * SECOND_MS);
    }
    assert_eq!(&waits[..4], &[1_000, 2_000, 4_000, 8_000]);
    assert_eq!(*waits.last().unwrap(), MAX_BACKOFF_MS);
    // A success resets the streak.
    f.attempt(&big, &small_request(), served(1, 1), &none).await;
    f.attempt(&big, &small_request(), Outcome::RateLimited, &none)
        .await;
    let until = f
        .ledger
        .reserve(&big, &small_request())
        .await
        .err()
        .unwrap()
        .retry_at()
        .unwrap();
    assert_eq!(until - f.clock.now_ms(), 1_000);
}

#[tokio::test]
async fn a_spent_credit_cools_the_provider_until_next_month() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let priced = f.plan("priced");
    let none = RateHeaders::default();
    // $0.01 at $1000/Mtok is 10 tokens; 6 + 4 fit, and the next is refused.
    let tiny = Estimate {
        prompt_tokens: 6,
        completion_cap: Some(4),
    };
    f.attempt(&priced, &tiny, served(6, 4), &none).await;
    assert!(matches!(
        f.ledger.reserve(&priced, &tiny).await,
        Err(Denial::Full {
            window: "credit_usd",
            ..
        })
    ));
    // The provider itself says the credit is gone (402) before we think so.
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let priced = f.plan("priced");
    f.attempt(&priced, &tiny, Outcome::QuotaExhausted, &none)
        .await;
    let denial = f.ledger.reserve(&priced, &tiny).await.err().unwrap();
    assert_eq!(denial.retry_at(), Some(utc(2026, 12, 1, 0, 0)));
}

#[tokio::test]
async fn headers_correct_the_count() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let small = f.plan("small");
    // Someone else spends this key too: the provider says 1 of 5 remains today.
    let headers = RateHeaders::parse(
        [
            ("x-ratelimit-limit-requests", "5"),
            ("x-ratelimit-remaining-requests", "1"),
            ("x-ratelimit-reset-requests", "11h59m"),
        ],
        f.clock.now_ms(),
    );
    f.attempt(&small, &small_request(), served(1, 1), &headers)
        .await;
    f.attempt(
        &small,
        &small_request(),
        served(1, 1),
        &RateHeaders::default(),
    )
    .await;
    assert!(matches!(
        f.ledger.reserve(&small, &small_request()).await,
        Err(Denial::Full { window: "rpd", .. })
    ));
}

/// Groq's headers on a provider whose fragment declares no limits: the
/// answer that says nothing remains stops the next request until the
/// reported reset, whichever way the window is read.
#[tokio::test]
async fn an_undeclared_limit_reported_used_up_cools_the_model_until_its_reset() {
    for (reset, wait_ms) in [("86400s", 86_400_000), ("2m59.56s", 179_560)] {
        let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
        let learn = f.plan("learn-chat");
        for left in ["2", "1", "0"] {
            let headers = RateHeaders::parse(
                [
                    ("x-ratelimit-limit-requests", "3"),
                    ("x-ratelimit-remaining-requests", left),
                    ("x-ratelimit-reset-requests", reset),
                ],
                f.clock.now_ms(),
            );
            f.attempt(&learn, &small_request(), served(1, 1), &headers)
                .await;
        }
        let denial = f
            .ledger
            .reserve(&learn, &small_request())
            .await
            .err()
            .expect("the request after `remaining: 0` is not sent");
        assert_eq!(denial.retry_at(), Some(f.clock.now_ms() + wait_ms));
        assert!(
            denial
                .to_string()
                .contains("the provider reported its request limit (3) used up"),
            "{denial}"
        );
        f.clock.advance(wait_ms);
        assert!(f.ledger.reserve(&learn, &small_request()).await.is_ok());
    }
}

/// OpenAI's reading of a report without a reset: a minute window.
#[tokio::test]
async fn a_used_up_report_without_a_reset_cools_for_a_minute() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let learn = f.plan("learn-chat");
    let headers = RateHeaders::parse(
        [
            ("x-ratelimit-limit-tokens", "6000"),
            ("x-ratelimit-remaining-tokens", "0"),
        ],
        f.clock.now_ms(),
    );
    f.attempt(&learn, &small_request(), served(1, 1), &headers)
        .await;
    let denial = f.ledger.reserve(&learn, &small_request()).await.err();
    assert_eq!(
        denial.and_then(|d| d.retry_at()),
        Some(f.clock.now_ms() + MINUTE_MS)
    );
}

#[tokio::test]
async fn counts_survive_a_restart_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(utc(2026, 11, 25, 12, 0));
    {
        let f = fixture(
            Backend::Store(store::Store::open(dir.path()).unwrap()),
            clock.clone(),
        );
        let small = f.plan("small");
        for _ in 0..3 {
            f.attempt(
                &small,
                &small_request(),
                served(10, 10),
                &RateHeaders::default(),
            )
            .await;
        }
        f.ledger.flush().await;
    }
    clock.advance(2 * MINUTE_MS);
    let f = fixture(
        Backend::Store(store::Store::open(dir.path()).unwrap()),
        clock.clone(),
    );
    let small = f.plan("small");
    for _ in 0..2 {
        f.attempt(
            &small,
            &small_request(),
            served(10, 10),
            &RateHeaders::default(),
        )
        .await;
    }
    assert!(matches!(
        f.ledger.reserve(&small, &small_request()).await,
        Err(Denial::Full { window: "rpd", .. })
    ));
    // The next day starts fresh.
    clock.set(utc(2026, 11, 26, 0, 0));
    assert!(f.ledger.reserve(&small, &small_request()).await.is_ok());
}

#[tokio::test]
async fn an_unsettled_reservation_stays_counted() {
    let f = fixture(Backend::Memory, ManualClock::at(utc(2026, 11, 25, 12, 0)));
    let small = f.plan("small");
    drop(f.ledger.reserve(&small, &small_request()).await.unwrap());
    let report = f.ledger.report().await;
    let rpd = report.quotas.iter().find(|r| r.window == "rpd").unwrap();
    assert_eq!(rpd.used, Some(1.0));
    let table = report.table();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("free") && l.contains("small-1") && l.contains("rpd")),
        "{table}"
    );
    assert!(!table.contains("sk-test"));
}
