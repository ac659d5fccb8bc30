//! `tollgate import litellm`, as someone moving from a LiteLLM proxy meets
//! it: LiteLLM's documented example configs and one shaped like the original
//! gateway's, checked with `tollgate check` and served against mocks.

use crate::support::gateway::{Setup, content, fragment, hello, run, tollgate};
use crate::support::mock::{Behavior, Mock};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn litellm(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("tests/litellm")
        .join(name)
}

/// `tollgate import litellm CONFIG --out DIR/providers [extra...]`.
fn import(dir: &Path, config: &Path, extra: &[&str]) -> (bool, String) {
    run(Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["import", "litellm"])
        .arg(config)
        .arg("--out")
        .arg(dir.join("providers"))
        .args(extra)
        .current_dir(dir)
        .env_clear())
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap()
}

fn model<'a>(fragment: &'a Value, alias: &str) -> &'a Value {
    fragment["models"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["alias"] == alias)
        .unwrap_or_else(|| panic!("no model {alias}"))
}

fn chains(dir: &Path) -> BTreeMap<String, Vec<String>> {
    serde_yaml::from_value(yaml(&dir.join("providers/fallbacks.yaml"))).unwrap()
}

#[test]
fn the_original_gateways_catalogue_keeps_its_models_limits_keys_and_chains() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = import(
        dir.path(),
        &litellm("gateway/config.yaml"),
        &[
            "--fallbacks",
            litellm("gateway/fallbacks.json").to_str().unwrap(),
        ],
    );
    assert!(ok, "{report}");
    assert!(report.contains("imported 17 of 18 deployments"), "{report}");

    // Each provider keeps its shipped free-tier limits, LiteLLM's rpm/tpm
    // on top, and the key variable the LiteLLM config named.
    let groq = yaml(&dir.path().join("providers/groq.yaml"));
    assert_eq!(groq["api_key"], "${GROQ_API_KEY}");
    let llama = model(&groq, "groq-llama-3.3-70b");
    assert_eq!(llama["model"], "llama-3.3-70b-versatile");
    assert_eq!(llama["limits"]["rpm"], 30);
    assert_eq!(llama["limits"]["rpd"], 1000, "the shipped daily limit");
    assert_eq!(
        model(&groq, "groq-whisper-large-v3")["mode"],
        "transcription"
    );
    let hf = yaml(&dir.path().join("providers/huggingface.yaml"));
    assert_eq!(hf["api_key"], "${HF_TOKEN}");
    assert_eq!(
        model(&hf, "hf-llama-3.3-70b")["price"]["input_per_mtok"].as_f64(),
        Some(0.9)
    );
    let boxes = yaml(&dir.path().join("providers/claudebox.yaml"));
    assert_eq!(
        boxes["base_url"],
        "${CLAUDEBOX_BASE_URL:-http://claudebox:8181/v1}"
    );
    assert_eq!(boxes["tier"], "subscription");
    assert!(
        boxes.get("api_key").is_none(),
        "a placeholder key is not a key"
    );
    let ollama = yaml(&dir.path().join("providers/ollama-cuda.yaml"));
    assert_eq!(
        ollama["base_url"],
        "${OLLAMA_CUDA_BASE_URL:-http://ollama-cuda:11434/v1}"
    );
    assert_eq!(
        model(&ollama, "local-ollama-cuda-qwen3-8b")["gpu"]["device"],
        "cuda"
    );
    let router = yaml(&dir.path().join("providers/openrouter.yaml"));
    assert_eq!(model(&router, "or-claude-sonnet")["tier"], "paid");

    let chains = chains(dir.path());
    assert_eq!(
        chains["groq-llama-3.3-70b"],
        [
            "cerebras-qwen3-235b",
            "mistral-small",
            "cohere-command-r",
            "or-llama-3.3-70b",
            "hf-llama-3.3-70b",
            "claudebox-sonnet",
            "pibox-zai-glm-4.7",
            "local-ollama-cuda-qwen3-8b",
            "local-ollama-cpu-qwen3-4b"
        ]
    );
    assert_eq!(chains["or-claude-sonnet"], ["claudebox-sonnet"]);

    // Nothing dropped in silence.
    for said in [
        "`vertex-gemini`: provider `vertex_ai` has no Tollgate adapter",
        "`openai-gpt-4o` is not an imported model_name",
        "litellm_settings.success_callback",
        "TOLLGATE_MASTER_KEY to the value of LITELLM_MASTER_KEY",
        "router_settings.redis_host",
        "GROQ=1   and GROQ_API_KEY",
    ] {
        assert!(report.contains(said), "missing {said:?} in:\n{report}");
    }

    let (ok, text) = run(&mut tollgate("check", dir.path()));
    assert!(ok, "{text}");
    assert!(text.contains("fallbacks: 4 chains"), "{text}");
    let (ok, text) =
        run(tollgate("check", dir.path())
            .envs([("GROQ", "1"), ("GROQ_API_KEY", "gsk-import-0001")]));
    assert!(
        ok && text.contains("groq") && text.contains("enabled"),
        "{text}"
    );
}

#[test]
fn litellms_documented_examples_import_without_copying_a_literal_key() {
    for (config, expected) in [
        (
            "docs-quickstart.yaml",
            &[
                "provider `azure` has no Tollgate adapter",
                "provider `bedrock` has no Tollgate adapter",
                "wildcard routing is not carried over",
                "general_settings.master_key",
                "general_settings.alerting",
            ][..],
        ),
        (
            "docs-fallbacks.yaml",
            &[
                "put it in .env as OPENAI_API_KEY",
                "context_window_fallbacks",
                "litellm_settings.num_retries",
                "3 deployments",
            ][..],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (ok, report) = import(dir.path(), &litellm(config), &[]);
        assert!(ok, "{config}: {report}");
        for said in expected {
            assert!(
                report.contains(said),
                "{config}: missing {said:?} in:\n{report}"
            );
        }
        let written: String = std::fs::read_dir(dir.path().join("providers"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        for secret in ["sk-1234", "sk-my-literal-openai-key-0001"] {
            assert!(!report.contains(secret), "{config}: the report shows a key");
            assert!(!written.contains(secret), "{config}: a key was written");
        }
        let (ok, text) = run(&mut tollgate("check", dir.path()));
        assert!(ok, "{config}: {text}");
    }

    // The load-balanced group: one alias, its other servers first in its
    // chain, then its fallbacks, ordered by quota left.
    let dir = tempfile::tempdir().unwrap();
    assert!(import(dir.path(), &litellm("docs-fallbacks.yaml"), &[]).0);
    assert_eq!(
        chains(dir.path())["zephyr-beta"],
        [
            "zephyr-beta-local-8002",
            "zephyr-beta-local-8003",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-16k"
        ]
    );
    let policies = yaml(&dir.path().join("providers/policies.yaml"));
    assert_eq!(policies["aliases"]["zephyr-beta"], "most-headroom");
    let local = yaml(&dir.path().join("providers/local-8001.yaml"));
    assert_eq!(local["base_url"], "http://0.0.0.0:8001/v1");
    assert_eq!(local["timeouts"]["response"].as_f64(), Some(10.0));
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let config = litellm("docs-quickstart.yaml");
    assert!(import(dir.path(), &config, &[]).0);
    let openai = dir.path().join("providers/openai.yaml");
    std::fs::write(&openai, "# edited by hand\n").unwrap();

    let (ok, text) = import(dir.path(), &config, &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("openai.yaml") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&openai).unwrap(),
        "# edited by hand\n"
    );

    let (ok, text) = import(dir.path(), &config, &["--force"]);
    assert!(ok, "{text}");
    assert!(
        std::fs::read_to_string(&openai)
            .unwrap()
            .contains("alias: gpt-4o")
    );
}

#[test]
fn a_clash_with_the_folders_other_fragments_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&providers).unwrap();
    let mine = fragment("mine", "http://127.0.0.1:1/v1", &[("gpt-4o", "gpt-4o")], "");
    std::fs::write(providers.join("mine.yaml"), mine).unwrap();

    let (ok, text) = import(dir.path(), &litellm("docs-quickstart.yaml"), &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("nothing was written") && text.contains("already defined"),
        "{text}"
    );
    let files: Vec<_> = std::fs::read_dir(&providers).unwrap().collect();
    assert_eq!(files.len(), 1, "only mine.yaml is there");
}

#[test]
fn a_config_with_nothing_to_map_fails_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = import(dir.path(), &litellm("nothing.yaml"), &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert!(
        text.contains("`bedrock`") && text.contains("`vertex_ai`"),
        "{text}"
    );
    assert!(!dir.path().join("providers").exists());

    let (ok, text) = import(dir.path(), &litellm("missing.yaml"), &[]);
    assert!(!ok && text.contains("missing.yaml"), "{text}");
}

#[tokio::test]
async fn an_imported_config_serves_a_chat_and_falls_back() {
    let primary = Mock::start("primary").await;
    let backup = Mock::start("backup").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: chat\n    litellm_params:\n      model: openai/m1\n      api_base: {}\n      api_key: os.environ/PRIMARY_KEY\n  - model_name: backup-chat\n    litellm_params:\n      model: openai/m2\n      api_base: {}\nrouter_settings:\n  fallbacks: [{{chat: [backup-chat]}}]\n",
            primary.base_url(),
            backup.base_url()
        ),
    )
    .unwrap();
    let (ok, report) = import(dir.path(), &config, &[]);
    assert!(ok, "{report}");

    let mut setup = Setup::new().env("PRIMARY_KEY", "sk-primary-import-0001");
    for entry in std::fs::read_dir(dir.path().join("providers")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(flag) = serde_yaml::from_str::<Value>(&text).unwrap()["flag"].as_str() {
            assert!(report.contains(&format!("{flag}=1")), "{report}");
            setup = setup.env(flag, "1");
        }
        setup = setup.file(&path.file_name().unwrap().to_string_lossy(), &text);
    }
    let gateway = setup.start();

    let reply = gateway.chat(hello("chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from primary");
    let sent = &primary.received()[0];
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-primary-import-0001")
    );

    primary.set(Behavior::rate_limited());
    let reply = gateway.chat(hello("chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from backup");
    assert_eq!(reply.header("x-tollgate-provider"), Some("backup-chat"));
    assert_eq!(backup.received().len(), 1);
}
