//! Gateway keys: every status a key can meet (401, 403, 429, 402), spend
//! counted from prices, tier guards and the route header, the admin API and
//! its command line, a restart, a hot reload of keys.yaml, and one key's
//! limit kept by two gateways sharing Redis.

use crate::quotas::Redis;
use crate::reload::eventually;
use crate::support::gateway::{Gateway, Setup, fragment_of, hello, run};
use crate::support::mock::{Behavior, Mock};
use serde_json::{Value, json};
use std::time::Duration;

const MASTER: &str = "tg-master-0123456789abcdef";
const ALICE: &str = "tg-alice-0123456789abcdef";
const BOB: &str = "tg-bob-0123456789abcdef";
const CAROL: &str = "tg-carol-0123456789abcdef";
const DAVE: &str = "tg-dave-0123456789abcdef";
const OLD: &str = "tg-old-0123456789abcdef";

/// `free-chat` (free) falling back to `paid-chat` (paid, $1000 per million
/// tokens each way: the mock's 15 tokens cost $0.015).
fn setup(free: &Mock, paid: &Mock) -> Setup {
    let paid_fragment = fragment_of("paidprov", "openai", &paid.base_url(), &[], "")
        .replace("tier: free", "tier: paid")
        + "  - { alias: paid-chat, model: p1, mode: chat, price: { input_per_mtok: 1000, output_per_mtok: 1000 } }\n";
    Setup::new()
        .provider("freeprov", &free.base_url(), &[("free-chat", "f1")])
        .file("paidprov.yaml", &paid_fragment)
        .enable("paidprov")
        .fallbacks("free-chat: [paid-chat]\n")
        .env("TOLLGATE_MASTER_KEY", MASTER)
        .env("ALICE_KEY", ALICE)
}

const KEYS: &str = r#"keys:
  - name: alice
    key: ${ALICE_KEY}
    models: ["free-*", "paid-*"]
    budget_usd: 0.02
  - name: bob
    key: tg-bob-0123456789abcdef
    models: ["free-*"]
  - name: carol
    key: tg-carol-0123456789abcdef
    rpm: 2
  - name: dave
    key: tg-dave-0123456789abcdef
    tiers: [free, local]
  - name: old
    key: tg-old-0123456789abcdef
    expires: 2020-01-01
"#;

async fn chat_as(
    gateway: &Gateway,
    key: Option<&str>,
    body: Value,
    tiers: Option<&str>,
) -> crate::support::gateway::Reply {
    let mut request = gateway.post("/v1/chat/completions").json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(tiers) = tiers {
        request = request.header("x-tollgate-tiers", tiers);
    }
    gateway.send(request).await
}

/// `tollgate keys` run from `dir` with an empty environment.
fn keys_cli(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command.arg("keys").current_dir(dir).env_clear();
    command
}

async fn admin(gateway: &Gateway, path: &str) -> Value {
    let reply = gateway
        .send(
            gateway
                .client
                .get(format!("{}{path}", gateway.url))
                .bearer_auth(MASTER),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

fn key_row<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {list}"))
}

#[tokio::test]
async fn each_key_gets_its_status_in_the_routes_shape() {
    let free = Mock::start("free").await;
    let paid = Mock::start("paid").await;
    let gateway = setup(&free, &paid).file("keys.yaml", KEYS).start();

    // 401: missing, unknown, expired; OpenAI's shape on OpenAI routes,
    // Anthropic's on /v1/messages.
    for key in [None, Some("tg-nobody-0123456789"), Some(OLD)] {
        let reply = chat_as(&gateway, key, hello("free-chat"), None).await;
        assert_eq!(reply.status, 401, "{key:?}: {}", reply.text);
        assert_eq!(reply.json()["error"]["type"], "authentication_error");
    }
    let expired = chat_as(&gateway, Some(OLD), hello("free-chat"), None).await;
    assert!(
        expired.error_message().contains("expired at 2020-01-01"),
        "{}",
        expired.text
    );
    let messages = json!({"model": "free-chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
    let reply = gateway
        .send(gateway.post("/v1/messages").json(&messages))
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    assert!(free.received().is_empty() && paid.received().is_empty());

    // 403 outside the allowlist, in both shapes; /v1/models lists only
    // what the key may use.
    let reply = chat_as(&gateway, Some(BOB), hello("paid-chat"), None).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.json()["error"]["code"], "model_not_allowed");
    let reply = gateway
        .send(gateway.post("/v1/messages").header("x-api-key", BOB).json(&json!({"model": "paid-chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})))
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["type"], "permission_error");
    let models = gateway
        .send(
            gateway
                .client
                .get(format!("{}/v1/models", gateway.url))
                .bearer_auth(BOB),
        )
        .await
        .json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["free-chat"]);
    assert!(paid.received().is_empty());

    // A key may not read /admin or /metrics; the master key may use /v1.
    for path in ["/admin/keys", "/admin/quotas", "/metrics"] {
        let reply = gateway
            .send(
                gateway
                    .client
                    .get(format!("{}{path}", gateway.url))
                    .bearer_auth(ALICE),
            )
            .await;
        assert_eq!(reply.status, 401, "{path}");
    }
    let reply = chat_as(&gateway, Some(MASTER), hello("free-chat"), None).await;
    assert_eq!(reply.status, 200);

    // 200, with the route header.
    let reply = chat_as(&gateway, Some(ALICE), hello("free-chat"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-route"), Some("free-chat=served"));

    // 429 from the key's own rpm, with its headers; the provider never
    // hears of the third request.
    let before = free.received().len();
    for _ in 0..2 {
        assert_eq!(
            chat_as(&gateway, Some(CAROL), hello("free-chat"), None)
                .await
                .status,
            200
        );
    }
    let reply = chat_as(&gateway, Some(CAROL), hello("free-chat"), None).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.json()["error"]["code"], "key_rate_limit_exceeded");
    assert_eq!(reply.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some("0"));
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert!(reply.error_message().contains("carol"), "{}", reply.text);
    assert_eq!(free.received().len(), before + 2);

    // The free candidate fails: alice spills to the paid one and spends
    // $0.015 of her $0.02.
    free.set(Behavior::status(503, r#"{"error":{"message":"down"}}"#));
    let reply = chat_as(&gateway, Some(ALICE), hello("free-chat"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.header("x-tollgate-route"),
        Some("free-chat=failed(unavailable), paid-chat=served")
    );
    assert_eq!(paid.received().len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys = admin(&gateway, "/admin/keys").await;
    let alice = key_row(&keys, "alice");
    assert_eq!(alice["usage"]["spend_usd"].as_f64(), Some(0.015), "{alice}");
    assert_eq!(alice["usage"]["requests"].as_u64(), Some(2), "{alice}");
    assert_eq!(alice["usage"]["tokens"].as_u64(), Some(30), "{alice}");
    assert!(
        (alice["remaining"]["budget_usd"].as_f64().unwrap() - 0.005).abs() < 1e-9,
        "{alice}"
    );
    // Per provider too, in /admin/quotas.
    let quotas = admin(&gateway, "/admin/quotas").await;
    let spend = quotas["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["window"] == "spend_usd")
        .unwrap();
    assert_eq!(
        (spend["provider"].as_str(), spend["used"].as_f64()),
        (Some("paidprov"), Some(0.015))
    );
    assert!(spend["limit"].is_null());
    assert!(
        !quotas.to_string().contains("key:"),
        "keys stay out of /admin/quotas"
    );

    // 402: the budget has no room for another paid answer; the paid
    // provider is not called, and the answer names each candidate.
    let reply = chat_as(&gateway, Some(ALICE), hello("free-chat"), None).await;
    assert_eq!(reply.status, 402, "{}", reply.text);
    assert_eq!(
        reply.header("x-tollgate-route"),
        Some("free-chat=failed(unavailable), paid-chat=skipped(budget)")
    );
    let message = reply.error_message();
    assert!(message.contains("paid-chat (paidprov): skipped: a paid candidate, and the key `alice` has spent $0.015 of its $0.02 monthly budget"), "{message}");
    assert_eq!(paid.received().len(), 1);
    // The same 402 on /v1/messages, as Anthropic's billing_error.
    let reply = gateway
        .send(
            gateway
                .post("/v1/messages")
                .header("x-api-key", ALICE)
                .json(&messages),
        )
        .await;
    assert_eq!(reply.status, 402, "{}", reply.text);
    assert_eq!(reply.json()["error"]["type"], "billing_error");

    // Budgets guard money, not free quota: the free candidate still serves.
    free.set(Behavior::Ok);
    let reply = chat_as(&gateway, Some(ALICE), hello("free-chat"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Tier guards: dave may never spill to paid; a request may narrow its
    // tiers further. Neither reaches the paid provider.
    free.set(Behavior::status(503, r#"{"error":{"message":"down"}}"#));
    let reply = chat_as(&gateway, Some(DAVE), hello("free-chat"), None).await;
    assert_eq!(reply.status, 402, "{}", reply.text);
    assert_eq!(
        reply.header("x-tollgate-route"),
        Some("free-chat=failed(unavailable), paid-chat=skipped(tier)")
    );
    assert!(
        reply
            .error_message()
            .contains("its tier `paid` is not among this request's tiers (free, local)")
    );
    let reply = chat_as(
        &gateway,
        Some(MASTER),
        hello("free-chat"),
        Some("free,local"),
    )
    .await;
    assert_eq!(reply.status, 402, "{}", reply.text);
    let reply = chat_as(&gateway, Some(DAVE), hello("free-chat"), Some("free,gold")).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(paid.received().len(), 1);

    // Nothing shows a secret or its hash.
    let listed = admin(&gateway, "/admin/keys").await.to_string();
    for secret in [ALICE, BOB, CAROL, DAVE, OLD, MASTER] {
        assert!(!listed.contains(secret));
    }
    assert!(
        !listed.contains("sha256") && !listed.contains("hash"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_stream_counts_its_tokens_on_the_key() {
    let free = Mock::start("free").await;
    let paid = Mock::start("paid").await;
    let gateway = setup(&free, &paid).file("keys.yaml", KEYS).start();
    let mut body = hello("free-chat");
    body["stream"] = true.into();
    body["stream_options"] = json!({"include_usage": true});
    let reply = chat_as(&gateway, Some(BOB), body, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.events().last().map(String::as_str), Some("[DONE]"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bob = key_row(&admin(&gateway, "/admin/keys").await, "bob").clone();
    assert_eq!(bob["usage"]["tokens"].as_u64(), Some(15), "{bob}");
    assert_eq!(bob["usage"]["spend_usd"].as_f64(), Some(0.0), "{bob}");
}

#[tokio::test]
async fn keys_made_through_the_api_are_hashed_survive_a_restart_and_revoke() {
    let free = Mock::start("free").await;
    let paid = Mock::start("paid").await;
    let mut gateway = setup(&free, &paid).start();
    // Without keys the master key serves /v1, as before.
    assert_eq!(
        chat_as(&gateway, Some(MASTER), hello("free-chat"), None)
            .await
            .status,
        200
    );

    let made = gateway
        .send(
            gateway
                .post("/admin/keys")
                .bearer_auth(MASTER)
                .json(&json!({"name": "agent", "models": ["free-*"], "rpm": 5, "budget_usd": 1})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let secret = made.json()["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tg-"));
    let again = gateway
        .send(
            gateway
                .post("/admin/keys")
                .bearer_auth(MASTER)
                .json(&json!({"name": "agent"})),
        )
        .await;
    assert_eq!(again.status, 409);
    let bad = gateway
        .send(
            gateway
                .post("/admin/keys")
                .bearer_auth(MASTER)
                .json(&json!({"name": "x", "rpm": 0})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.error_message().contains("`rpm`"), "{}", bad.text);
    let chosen = gateway
        .send(
            gateway
                .post("/admin/keys")
                .bearer_auth(MASTER)
                .json(&json!({"name": "y", "key": "my-own-secret-123456"})),
        )
        .await;
    assert_eq!(chosen.status, 400);

    // Now that a key exists, /v1 needs one.
    assert_eq!(
        chat_as(&gateway, None, hello("free-chat"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        chat_as(&gateway, Some(&secret), hello("free-chat"), None)
            .await
            .status,
        200
    );
    let store = std::fs::read(gateway.dir().join("data/keys.redb")).unwrap();
    assert!(
        !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored"
    );

    gateway.restart(true);
    assert_eq!(
        chat_as(&gateway, Some(&secret), hello("free-chat"), None)
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let agent = key_row(&admin(&gateway, "/admin/keys").await, "agent").clone();
    assert_eq!(
        agent["usage"]["requests"].as_f64(),
        Some(2.0),
        "counts survive: {agent}"
    );
    assert_eq!(agent["source"], "api");
    assert_eq!(agent["rpm"], 5);

    // The command line, against the same gateway.
    let cli = |args: &[&str]| {
        run(keys_cli(gateway.dir())
            .args(args)
            .env("TOLLGATE_URL", &gateway.url)
            .env("TOLLGATE_MASTER_KEY", MASTER))
    };
    let (ok, out) = cli(&[
        "add",
        "ci-bot",
        "--model",
        "free-*",
        "--tpd",
        "1000",
        "--tiers",
        "free,local",
    ]);
    assert!(ok, "{out}");
    let cli_secret = out
        .split_whitespace()
        .find(|w| w.starts_with("tg-"))
        .unwrap()
        .to_owned();
    assert_eq!(
        chat_as(&gateway, Some(&cli_secret), hello("free-chat"), None)
            .await
            .status,
        200
    );
    let (ok, out) = cli(&["list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("ci-bot") && out.contains("tpd=1000") && out.contains("agent"),
        "{out}"
    );
    assert!(!out.contains(&cli_secret) && !out.contains(&secret));
    let (ok, out) = cli(&["rm", "ci-bot"]);
    assert!(ok, "{out}");
    assert_eq!(
        chat_as(&gateway, Some(&cli_secret), hello("free-chat"), None)
            .await
            .status,
        401
    );
    let (ok, out) = cli(&["rm", "ci-bot"]);
    assert!(!ok && out.contains("no key is named `ci-bot`"), "{out}");
    let (ok, out) = run(keys_cli(gateway.dir())
        .args(["list"])
        .env("TOLLGATE_URL", &gateway.url));
    assert!(!ok && out.contains("TOLLGATE_MASTER_KEY"), "{out}");

    let reply = gateway
        .send(
            gateway
                .client
                .delete(format!("{}/admin/keys/agent", gateway.url))
                .bearer_auth(MASTER),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        chat_as(&gateway, Some(&secret), hello("free-chat"), None)
            .await
            .status,
        401
    );
    gateway.restart(true);
    assert_eq!(
        chat_as(&gateway, Some(&secret), hello("free-chat"), None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn keys_yaml_reloads_without_a_restart() {
    let free = Mock::start("free").await;
    let paid = Mock::start("paid").await;
    let gateway = setup(&free, &paid).start();
    assert_eq!(
        chat_as(&gateway, Some(MASTER), hello("free-chat"), None)
            .await
            .status,
        200
    );
    let keys = gateway.dir().join("providers/keys.yaml");
    std::fs::write(
        &keys,
        "keys:\n  - { name: bob, key: tg-bob-0123456789abcdef, models: [\"free-*\"] }\n",
    )
    .unwrap();
    eventually("keys.yaml to be loaded", async || {
        chat_as(&gateway, Some(BOB), hello("free-chat"), None)
            .await
            .status
            == 200
    })
    .await;
    assert_eq!(
        chat_as(&gateway, Some(BOB), hello("paid-chat"), None)
            .await
            .status,
        403
    );
    // A broken file is refused: the keys in service stay, and the error
    // shows in /admin/plugins.
    std::fs::write(&keys, "keys:\n  - { name: bob, key: tiny-secret }\n").unwrap();
    eventually("the broken keys.yaml to be reported", async || {
        admin(&gateway, "/admin/plugins").await["config"]["last_error"].is_string()
    })
    .await;
    let report = admin(&gateway, "/admin/plugins").await;
    let error = report["config"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("16 characters") && !error.contains("tiny-secret"),
        "{error}"
    );
    assert_eq!(
        chat_as(&gateway, Some(BOB), hello("free-chat"), None)
            .await
            .status,
        200
    );
    // Widening the allowlist takes effect.
    std::fs::write(
        &keys,
        "keys:\n  - { name: bob, key: tg-bob-0123456789abcdef }\n",
    )
    .unwrap();
    eventually("the new allowlist to be loaded", async || {
        chat_as(&gateway, Some(BOB), hello("paid-chat"), None)
            .await
            .status
            == 200
    })
    .await;
}

#[tokio::test]
async fn two_gateways_sharing_redis_keep_one_keys_limit() {
    let Some(redis) = Redis::start() else { return };
    let free = Mock::start("free").await;
    let paid = Mock::start("paid").await;
    let shared = || {
        setup(&free, &paid)
            .file("keys.yaml", KEYS)
            .env("TOLLGATE_LEDGER", &redis.url)
            .start()
    };
    let (a, b) = (shared(), shared());
    let mut statuses = Vec::new();
    for i in 0..4 {
        let gateway = if i % 2 == 0 { &a } else { &b };
        statuses.push(
            chat_as(gateway, Some(CAROL), hello("free-chat"), None)
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 429, 429],
        "carol's rpm of 2 across both"
    );
    assert_eq!(free.received().len(), 2);
    let carol = key_row(&admin(&b, "/admin/keys").await, "carol").clone();
    assert_eq!(carol["remaining"]["rpm"].as_u64(), Some(0), "{carol}");
    assert_eq!(admin(&b, "/admin/keys").await["backend"], "redis");
}
