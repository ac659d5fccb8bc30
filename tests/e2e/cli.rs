//! `tollgate check` and plugin loading, as a user meets them.

use crate::support::gateway::{Setup, content, fragment, hello, run, tollgate};
use crate::support::mock::Mock;

fn check(dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    run(tollgate("check", dir).envs(env.iter().copied()))
}

#[test]
fn check_names_the_file_and_field_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&providers).unwrap();
    let good = fragment(
        "alpha",
        "http://127.0.0.1:1/v1",
        &[("alpha-chat", "a1")],
        "",
    );
    std::fs::write(providers.join("alpha.yaml"), &good).unwrap();

    let (ok, text) = check(
        dir.path(),
        &[("ALPHA", "1"), ("ALPHA_API_KEY", "sk-check-0001")],
    );
    assert!(ok, "{text}");
    assert!(text.contains("alpha") && text.contains("enabled"), "{text}");
    assert!(
        !text.contains("sk-check-0001"),
        "check printed a key: {text}"
    );

    let typo = good.replace("    mode: chat", "    mode: chatt");
    std::fs::write(providers.join("alpha.yaml"), typo).unwrap();
    let (ok, text) = check(dir.path(), &[]);
    assert!(!ok, "a bad mode must fail the check");
    assert!(
        text.contains("alpha.yaml") && text.contains("models[0].mode"),
        "{text}"
    );

    std::fs::write(providers.join("alpha.yaml"), &good).unwrap();
    std::fs::write(
        providers.join("fallbacks.yaml"),
        "alpha-chat: [beta-chat]\n",
    )
    .unwrap();
    let (ok, text) = check(dir.path(), &[]);
    assert!(!ok);
    assert!(
        text.contains("fallbacks.yaml: alpha-chat[0]: `beta-chat`"),
        "{text}"
    );
}

#[tokio::test]
async fn a_corrupt_plugin_file_is_rejected_and_the_bundled_adapter_serves() {
    let mock = Mock::start("alpha").await;
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .plugin_bytes("openai", b"\0asm this is not a component")
        .start();
    let reply = gateway.chat(hello("alpha-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from alpha");

    let dir = gateway.dir();
    let (ok, text) = check(dir, &[("ALPHA", "1"), ("ALPHA_API_KEY", "sk-x")]);
    assert!(!ok, "check must fail on a rejected plugin: {text}");
    assert!(
        text.contains("openai") && text.contains("REJECTED") && text.contains("openai.wasm"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plugin_file_overrides_the_bundled_adapter_of_its_name() {
    let mock = Mock::start("alpha").await;
    // The faulty fixture installed as `openai.wasm`: its `trap` model proves
    // which adapter is serving.
    let gateway = Setup::new()
        .provider(
            "alpha",
            &mock.base_url(),
            &[("alpha-chat", "trap"), ("alpha-ok", "a1")],
        )
        .plugin("faulty", "openai")
        .start();
    let reply = gateway.chat(hello("alpha-chat")).await;
    assert_eq!(reply.status, 502, "{}", reply.text);
    assert!(
        reply.error_message().contains("deliberate trap"),
        "{}",
        reply.text
    );
    assert_eq!(gateway.chat(hello("alpha-ok")).await.status, 200);
}

#[tokio::test]
async fn dotenv_enables_providers_and_the_process_environment_wins() {
    let mock = Mock::start("alpha").await;
    let gateway = Setup::new()
        .disabled_provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .dotenv("ALPHA=1\nALPHA_API_KEY=sk-from-dotenv-file\nTOLLGATE_MASTER_KEY=from-dotenv\n")
        .env("TOLLGATE_MASTER_KEY", "from-process")
        .start();
    let request = |key: &str| {
        gateway
            .post("/v1/chat/completions")
            .bearer_auth(key)
            .json(&hello("alpha-chat"))
    };
    assert_eq!(gateway.send(request("from-dotenv")).await.status, 401);
    let reply = gateway.send(request("from-process")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        mock.received()[0].header("authorization"),
        Some("Bearer sk-from-dotenv-file")
    );
}
