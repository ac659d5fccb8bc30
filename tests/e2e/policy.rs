//! Routing policies as plugins, chosen per alias in `policies.yaml`, and a
//! plugin built against the previous minor version of the WIT contract.

use crate::reload::{eventually, plugins, publish, row};
use crate::support::gateway::{Setup, content, fragment, hello};
use crate::support::mock::Mock;

#[tokio::test]
async fn a_policy_plugin_changes_the_order_and_the_ledger_still_rules() {
    let a = Mock::start("a").await;
    let b = Mock::start("b").await;
    let gateway = Setup::new()
        .provider_with(
            "a",
            &a.base_url(),
            &[("a-chat", "a1")],
            "limits: { rpd: 10 }",
        )
        .provider_with(
            "b",
            &b.base_url(),
            &[("b-chat", "b1")],
            "limits: { rpd: 10 }",
        )
        .fallbacks("a-chat: [b-chat]\n")
        // The bundled most-headroom, installed from a file under another name.
        .plugin("most-headroom", "spread")
        .start();
    // free-first (the default) keeps the chain's order: a, while it has room.
    for _ in 0..5 {
        let reply = gateway.chat(hello("a-chat")).await;
        assert_eq!(reply.header("x-tollgate-provider"), Some("a-chat"));
    }
    // With `spread`, b (10 of 10 left) goes before a (5 of 10 left)...
    publish(
        &gateway.dir().join("providers").join("policies.yaml"),
        b"aliases:\n  a-chat: spread\n",
    );
    eventually("the policy file to be loaded", async || {
        let config = &plugins(&gateway).await["config"];
        config["last_reload_at"].is_string() && config["last_error"].is_null()
    })
    .await;
    // ...until both have as much left; ties keep the chain's order.
    let mut served = Vec::new();
    for _ in 0..8 {
        let reply = gateway.chat(hello("a-chat")).await;
        served.push(reply.header("x-tollgate-provider").unwrap().to_owned());
    }
    let b_then_alternate = ["b", "b", "b", "b", "b", "a", "b", "a"].map(|p| format!("{p}-chat"));
    assert_eq!(served, b_then_alternate);
    assert_eq!(a.received().len(), 7);
    assert_eq!(b.received().len(), 6);
    // Whatever the order, the ledger spends no more than the limits allow.
    for _ in 0..7 {
        assert_eq!(gateway.chat(hello("a-chat")).await.status, 200);
    }
    let reply = gateway.chat(hello("a-chat")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.header("x-tollgate-skipped"),
        Some("a-chat:rpd, b-chat:rpd")
    );
    assert_eq!((a.received().len(), b.received().len()), (10, 10));
    let report = plugins(&gateway).await;
    assert_eq!(row(&report, "spread")["kind"], "policy");
}

#[tokio::test]
async fn an_unknown_policy_is_rejected_and_the_old_one_keeps_serving() {
    let a = Mock::start("a").await;
    let gateway = Setup::new()
        .provider("a", &a.base_url(), &[("a-chat", "a1")])
        .start();
    publish(
        &gateway.dir().join("providers").join("policies.yaml"),
        b"default: no-such-policy\n",
    );
    eventually("the rejection", async || {
        plugins(&gateway).await["config"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no policy plugin named `no-such-policy`"))
    })
    .await;
    assert_eq!(gateway.chat(hello("a-chat")).await.status, 200);
}

#[tokio::test]
async fn a_plugin_built_against_wit_0_1_0_still_serves() {
    let mock = Mock::start("old").await;
    let text = fragment("old", &mock.base_url(), &[("old-chat", "o1")], "")
        .replace("adapter: openai", "adapter: legacy");
    let gateway = Setup::new()
        .file("old.yaml", &text)
        .enable("old")
        .plugin("legacy", "legacy")
        .start();
    let report = plugins(&gateway).await;
    assert_eq!(row(&report, "legacy")["wit_version"], "0.1.0");
    assert_eq!(row(&report, "openai")["wit_version"], "0.1.2");
    let reply = gateway.chat(hello("old-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from old");
    assert_eq!(mock.received()[0].body["model"], "o1");
    assert_eq!(
        mock.received()[0].header("authorization"),
        Some("Bearer sk-test-old-secret")
    );
    let mut request = hello("old-chat");
    request["stream"] = true.into();
    let reply = gateway.chat(request).await;
    assert_eq!(
        crate::support::gateway::streamed_text(&reply.events()),
        "hello from old"
    );
}

/// `first` → `second`, each alias routed by the faulty policy fixture.
async fn faulty_policy_gateway(
    first_alias: &str,
) -> (Mock, Mock, crate::support::gateway::Gateway) {
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let gateway = Setup::new()
        .provider("first", &first.base_url(), &[(first_alias, "f1")])
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks(&format!("{first_alias}: [second-chat]\n"))
        .file("policies.yaml", "default: faulty-policy\n")
        .plugin("faulty-policy", "faulty-policy")
        .env("TOLLGATE_PLUGIN_DEADLINE_MS", "100")
        .start();
    (first, second, gateway)
}

#[tokio::test]
async fn a_policy_that_traps_or_spins_leaves_the_chain_order() {
    for alias in ["trap-chat", "spin-chat"] {
        let (first, second, gateway) = faulty_policy_gateway(alias).await;
        let reply = gateway.chat(hello(alias)).await;
        assert_eq!(reply.status, 200, "{alias}: {}", reply.text);
        assert_eq!(reply.header("x-tollgate-provider"), Some(alias));
        assert_eq!((first.received().len(), second.received().len()), (1, 0));
    }
    // A working policy does reorder: this one reverses the chain.
    let (first, _second, gateway) = faulty_policy_gateway("plain-chat").await;
    let reply = gateway.chat(hello("plain-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("second-chat"));
    assert!(first.received().is_empty());
}

#[tokio::test]
async fn after_a_failure_the_policy_can_stop_or_wait() {
    use crate::support::mock::Behavior;
    // Reversed, `second` goes first; make it fail.
    let (first, second, gateway) = faulty_policy_gateway("stop-chat").await;
    second.set(Behavior::status(500, "{}"));
    let reply = gateway.chat(hello("stop-chat")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-tollgate-attempts"), Some("1"));
    assert!(first.received().is_empty(), "the policy said stop");

    let (first, second, gateway) = faulty_policy_gateway("wait-chat").await;
    second.set(Behavior::status(500, "{}"));
    let started = std::time::Instant::now();
    let reply = gateway.chat(hello("wait-chat")).await;
    assert_eq!(reply.header("x-tollgate-provider"), Some("wait-chat"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(first.received().len(), 1);
}
