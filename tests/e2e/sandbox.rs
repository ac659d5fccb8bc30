//! A plugin that traps, loops or hoards memory fails only its own attempt.

use crate::support::gateway::{Setup, content, hello, streamed_text};
use crate::support::mock::Mock;
use serde_json::Value;

/// A gateway whose `faulty` provider runs the misbehaving fixture plugin
/// (aliases `trap-chat`, `spin-chat`, `hog-chat`, `trap-stream-chat`,
/// `fine-chat`), with a `backup` provider on `mock` and tight sandbox limits.
fn faulty_setup(mock: &Mock) -> Setup {
    let aliases = [
        ("trap-chat", "trap"),
        ("spin-chat", "spin"),
        ("hog-chat", "hog"),
        ("trap-stream-chat", "trap-stream"),
        ("fine-chat", "fine"),
        ("escape-chat", "escape"),
        ("count-chat", "count"),
    ];
    faulty_alone(&mock.base_url(), &aliases, "")
        .provider("backup", &mock.base_url(), &[("backup-chat", "b1")])
        .env("TOLLGATE_PLUGIN_DEADLINE_MS", "200")
        .env("TOLLGATE_PLUGIN_MEMORY_MB", "32")
}

/// A gateway with only the `faulty` provider, on `base_url`.
fn faulty_alone(base_url: &str, aliases: &[(&str, &str)], extra: &str) -> Setup {
    let fragment = crate::support::gateway::fragment("faulty", base_url, aliases, extra)
        .replace("adapter: openai", "adapter: faulty");
    Setup::new()
        .plugin("faulty", "faulty")
        .file("faulty.yaml", &fragment)
        .env("FAULTY", "1")
        .env("FAULTY_API_KEY", "sk-test-faulty-secret")
}

#[tokio::test]
async fn a_plugin_cannot_send_the_providers_key_to_another_origin() {
    let provider = Mock::start("provider").await;
    let thief = Mock::start("thief").await;
    let backup = Mock::start("backup").await;
    let steal = format!(
        "adapter_options: {{ exfiltrate_to: \"{}/steal\" }}",
        thief.base_url()
    );
    let aliases = [("exfiltrate-chat", "exfiltrate")];
    let gateway = faulty_alone(&provider.base_url(), &aliases, &steal)
        .provider("backup", &backup.base_url(), &[("backup-chat", "b1")])
        .fallbacks("exfiltrate-chat: [backup-chat]\n")
        .start();
    let reply = gateway.chat(hello("exfiltrate-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from backup");
    assert!(
        thief.received().is_empty(),
        "the key went to {:?}",
        thief.received()
    );
    assert!(provider.received().is_empty());

    // Alone, the client learns why, and the key is nowhere in the answer.
    let gateway = faulty_alone(&provider.base_url(), &aliases, &steal).start();
    let reply = gateway.chat(hello("exfiltrate-chat")).await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    let expected = format!(
        "key to http://{}, not to its base_url's origin http://{}",
        thief.addr, provider.addr
    );
    assert!(reply.text.contains(&expected), "{}", reply.text);
    assert!(
        !reply.text.contains("sk-test-faulty-secret"),
        "{}",
        reply.text
    );
    assert!(thief.received().is_empty());
}

#[tokio::test]
async fn a_key_an_upstream_echoes_is_scrubbed_from_what_a_plugin_logs() {
    // The mock's answer carries the provider's key ("hello from <key>").
    let echo = Mock::start("sk-test-faulty-secret").await;
    let gateway = faulty_alone(&echo.base_url(), &[("log-chat", "log-body")], "")
        .capture_logs()
        .start();
    let reply = gateway.chat(hello("log-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let logs = gateway.logs();
    assert!(
        logs.contains("upstream said:") && logs.contains("hello from ***"),
        "{logs}"
    );
    assert!(!logs.contains("sk-test-faulty-secret"), "{logs}");
}

#[tokio::test]
async fn faulty_plugins_fail_the_attempt_and_the_chain_moves_on() {
    let mock = Mock::start("backup").await;
    let gateway = faulty_setup(&mock)
        .fallbacks("trap-chat: [backup-chat]\nspin-chat: [backup-chat]\nhog-chat: [backup-chat]\n")
        .start();

    for alias in ["trap-chat", "spin-chat", "hog-chat"] {
        let reply = gateway.chat(hello(alias)).await;
        assert_eq!(reply.status, 200, "{alias}: {}", reply.text);
        assert_eq!(content(&reply.json()), "hello from backup");
        assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));

        // A fault poisons only its own instance: the plugin keeps serving.
        let reply = gateway.chat(hello("fine-chat")).await;
        assert_eq!(reply.status, 200, "after {alias}: {}", reply.text);
    }
}

#[tokio::test]
async fn fault_reasons_name_the_plugin() {
    let mock = Mock::start("m").await;
    let gateway = faulty_setup(&mock).start();
    for (alias, reason) in [
        ("trap-chat", "deliberate trap"),
        ("spin-chat", "plugin `faulty` exceeded its CPU deadline"),
        ("hog-chat", "plugin `faulty` trapped"),
    ] {
        let reply = gateway.chat(hello(alias)).await;
        assert_eq!(reply.status, 502, "{alias}: {}", reply.text);
        let message = reply.error_message();
        assert!(message.contains(reason), "{alias}: {message}");
    }
    assert!(
        mock.received().is_empty(),
        "no faulty attempt reached the upstream"
    );
}

#[tokio::test]
async fn a_trap_mid_stream_before_the_first_chunk_falls_back() {
    let mock = Mock::start("backup").await;
    let gateway = faulty_setup(&mock)
        .fallbacks("trap-stream-chat: [backup-chat]\n")
        .start();
    let mut body = hello("trap-stream-chat");
    body["stream"] = Value::Bool(true);
    let reply = gateway.chat(body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-provider"), Some("backup-chat"));
    assert_eq!(streamed_text(&reply.events()), "hello from backup");
}

#[tokio::test]
async fn plugins_see_no_files_no_environment_and_no_network() {
    let mock = Mock::start("m").await;
    let gateway = faulty_setup(&mock).env("SECRET_IN_ENV", "x").start();
    let reply = gateway.chat(hello("escape-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let received = mock.received();
    assert_eq!(
        received[0].header("x-escape"),
        Some("files=denied env=0 net=denied")
    );
}

/// Spare instances are made ahead of requests, but none serves twice: a
/// plugin's state never carries from one request to the next.
#[tokio::test]
async fn no_instance_serves_two_requests() {
    let mock = Mock::start("m").await;
    let gateway = faulty_setup(&mock)
        .env("TOLLGATE_SPARE_INSTANCES", "2")
        .start();
    for _ in 0..6 {
        let reply = gateway.chat(hello("count-chat")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        // Give the refill task time to stock spares between requests.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let calls: Vec<Option<String>> = mock
        .received()
        .iter()
        .map(|r| r.header("x-calls").map(str::to_owned))
        .collect();
    assert_eq!(calls, vec![Some("1".to_owned()); 6]);
}
