//! `tollgate plugin new | build | check | test`, as a plugin author meets
//! them: a crate from the template, built with cargo, checked, tested
//! against its recorded cases, and dropped into a running gateway.
//!
//! The plugin crates build into `<target>/author-plugins`, shared by these
//! tests and kept between runs, so only the first run pays for the SDK's
//! dependencies.

use crate::support::fixtures::fixture;
use crate::support::gateway::{Setup, content, hello, run};
use crate::support::mock::{Behavior, Mock};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `tollgate plugin ARGS…` in `dir`, with the caller's environment (cargo
/// and rustup need it) and the shared plugin target folder.
fn plugin(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    command
        .arg("plugin")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", plugin_target())
        .env_remove("TOLLGATE_SDK")
        .env_remove("TOLLGATE_PLUGIN_MEMORY_MB");
    command
}

fn plugin_target() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tollgate"))
        .ancestors()
        .nth(2)
        .unwrap()
        .join("author-plugins")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The last line a command printed on stdout.
fn last_line(command: &mut Command) -> (bool, String, String) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    (output.status.success(), last, text)
}

#[tokio::test]
async fn a_new_adapter_builds_passes_its_cases_and_serves_when_dropped_in() {
    let work = tempfile::tempdir().unwrap();
    let (ok, text) = run(&mut plugin(work.path(), &["new", "acme-ai"]));
    assert!(ok, "{text}");
    let dir = work.path().join("acme-ai");
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        "src/lib.rs",
        "tests/chat.json",
        "README.md",
    ] {
        assert!(
            dir.join(file).is_file(),
            "plugin new wrote no {file}: {text}"
        );
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = repo().join("sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!(
            "tollgate-sdk = {{ path = \"{}\" }}",
            sdk.display()
        )),
        "{manifest}"
    );
    assert!(
        std::fs::read_to_string(dir.join("rust-toolchain.toml"))
            .unwrap()
            .contains("wasm32-wasip2")
    );
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.lines().count() <= 60,
        "the template has {} lines",
        lib.lines().count()
    );
    for place in ["URL:", "AUTH:", "REQUEST:", "RESPONSE:", "STREAM:"] {
        assert!(lib.contains(place), "the template marks no {place}");
    }

    let (ok, wasm, text) = last_line(&mut plugin(&dir, &["build"]));
    assert!(ok, "{text}");
    assert!(
        !text.contains("warning"),
        "the template builds with warnings: {text}"
    );
    let wasm = dir.join(wasm);
    assert_eq!(wasm, dir.join("dist/acme-ai.wasm"), "{text}");
    assert!(wasm.is_file());

    let (ok, text) = run(&mut plugin(&dir, &["check", "dist/acme-ai.wasm"]));
    assert!(ok, "{text}");
    assert!(
        text.contains("ok: adapter `acme-ai`, version 0.1.0, built against tollgate:plugin@0.1.2"),
        "{text}"
    );
    assert!(text.contains("modes: chat"), "{text}");

    let (ok, text) = run(&mut plugin(&dir, &["test", "--wasm", "dist/acme-ai.wasm"]));
    assert!(ok, "{text}");
    assert!(text.contains("3 passed, 0 failed"), "{text}");

    // A case that does not hold fails, and says where.
    let case = dir.join("tests/chat.json");
    let recorded = std::fs::read_to_string(&case).unwrap();
    std::fs::write(
        &case,
        recorded.replacen(
            r#""content": "Hello!" } }] }"#,
            r#""content": "Hi!" } }] }"#,
            1,
        ),
    )
    .unwrap();
    let (ok, text) = run(&mut plugin(&dir, &["test", "--wasm", "dist/acme-ai.wasm"]));
    assert!(!ok, "a wrong expectation must fail: {text}");
    assert!(
        text.contains(r#"body.choices[0].message.content: expected "Hi!", got "Hello!""#)
            && text.contains("2 passed, 1 failed"),
        "{text}"
    );
    std::fs::write(&case, recorded).unwrap();

    // A misspelt field is an error, not a field quietly left unchecked.
    let typo = dir.join("tests/typo.json");
    std::fs::write(
        &typo,
        r#"{"request": {"messages": []}, "upstream_reponse": {"status": 200}}"#,
    )
    .unwrap();
    let (ok, text) = run(&mut plugin(&dir, &["test", "--wasm", "dist/acme-ai.wasm"]));
    assert!(
        !ok && text.contains("unknown field `upstream_reponse`"),
        "{text}"
    );
    std::fs::remove_file(typo).unwrap();

    dropped_into_a_running_gateway(&wasm).await;
}

/// The built plugin and a fragment naming it, copied into a gateway that
/// has never heard of it, serve within 2 s.
async fn dropped_into_a_running_gateway(wasm: &Path) {
    let mock = Mock::start("acme").await;
    let gateway = Setup::new()
        .env("ACME", "1")
        .env("ACME_API_KEY", "sk-acme-drop-in")
        .start();
    let fragment = format!(
        "name: acme\nflag: ACME\nadapter: acme-ai\nbase_url: {}\napi_key: ${{ACME_API_KEY}}\ntier: free\nmodels:\n  - {{ alias: acme-chat, model: acme-large, mode: chat }}\n",
        mock.base_url()
    );
    let before = gateway.chat(hello("acme-chat")).await;
    assert_eq!(before.status, 404, "{}", before.text);

    let dropped = Instant::now();
    publish(wasm, &gateway.dir().join("plugins/acme-ai.wasm"));
    let staged = gateway.dir().join("providers/.acme.yaml");
    std::fs::write(&staged, fragment).unwrap();
    std::fs::rename(&staged, gateway.dir().join("providers/acme.yaml")).unwrap();
    let reply = loop {
        let reply = gateway.chat(hello("acme-chat")).await;
        if reply.status == 200 || dropped.elapsed() > Duration::from_secs(10) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let took = dropped.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from acme");
    assert!(
        took < Duration::from_secs(2),
        "served {took:?} after the drop"
    );
    eprintln!(
        "a dropped-in plugin served {} ms after the copy",
        took.as_millis()
    );
    let upstream = mock.received().pop().unwrap();
    assert_eq!(upstream.body["model"], "acme-large");
    assert_eq!(
        upstream.header("authorization"),
        Some("Bearer sk-acme-drop-in")
    );
}

/// Copies `from` to `to` as a file manager would publish it: written
/// beside, then renamed into place.
fn publish(from: &Path, to: &Path) {
    let staged = to.with_file_name(format!(
        ".{}.partial",
        to.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

#[test]
fn a_new_policy_passes_its_cases() {
    let work = tempfile::tempdir().unwrap();
    let (ok, text) = run(&mut plugin(
        work.path(),
        &["new", "quickest", "--kind", "policy", "--dir", "p"],
    ));
    assert!(ok, "{text}");
    let (ok, text) = run(&mut plugin(&work.path().join("p"), &["test"]));
    assert!(ok, "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
    let (ok, text) = run(&mut plugin(work.path(), &["check", "p/dist/quickest.wasm"]));
    assert!(ok && text.contains("ok: policy `quickest`"), "{text}");
}

#[tokio::test]
async fn the_guides_worked_example_passes_its_cases_and_is_the_code_the_guide_shows() {
    let example = repo().join("sdk/guide/acme");
    let work = tempfile::tempdir().unwrap();
    copy_dir(&example, work.path(), &["target", "dist"]);
    // Copied away from the repository, it finds the SDK by an absolute path.
    let manifest = work.path().join("Cargo.toml");
    let sdk = repo().join("sdk").canonicalize().unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace(
        r#"path = "../..""#,
        &format!("path = {:?}", sdk.display().to_string()),
    );
    std::fs::write(&manifest, text).unwrap();
    let (ok, text) = run(&mut plugin(work.path(), &["test"]));
    assert!(ok, "{text}");
    assert!(text.contains("5 passed, 0 failed"), "{text}");
    assert!(
        !text.contains("warning"),
        "the example builds with warnings: {text}"
    );

    let guide = std::fs::read_to_string(repo().join("sdk/README.md")).unwrap();
    let code = std::fs::read_to_string(example.join("src/lib.rs")).unwrap();
    assert!(
        guide.contains(&format!("```rust\n{code}```")),
        "sdk/README.md must show sdk/guide/acme/src/lib.rs as it is"
    );
    for case in ["chat.json", "stream.json"] {
        let text = std::fs::read_to_string(example.join("tests").join(case)).unwrap();
        assert!(
            guide.contains(&format!("```json\n{text}```")),
            "sdk/README.md must show tests/{case} as it is"
        );
    }
    let wasm = std::fs::read(work.path().join("dist/acme.wasm")).unwrap();
    a_wait_read_from_the_body_cools_the_model_down(&wasm).await;
}

/// Acme says how long to wait in its error body, not in a header: the
/// adapter's `retry_after_ms` is what the ledger cools the model for, and
/// what the client is told.
async fn a_wait_read_from_the_body_cools_the_model_down(wasm: &[u8]) {
    let mock = Mock::start("acme").await;
    mock.set(Behavior::status(
        429,
        r#"{"problem": {"code": "slow_down", "detail": "Too many generations this minute", "wait_seconds": 30}}"#,
    ));
    let gateway = Setup::new()
        .fragment(
            "acme",
            "acme",
            &mock.base_url(),
            &[("acme-chat", "acme-large", "chat")],
            "",
        )
        .plugin_bytes("acme", wasm)
        .start();
    let reply = gateway.chat(hello("acme-chat")).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((28..=30).contains(&retry), "retry-after {retry}");
    assert_eq!(mock.received()[0].path, "/v1/generate");
    assert_eq!(
        mock.received()[0].header("x-acme-key"),
        Some("sk-test-acme-secret")
    );
    let quotas = gateway.get("/admin/quotas").await.json();
    let cooled = quotas["quotas"].as_array().is_some_and(|q| {
        q.iter()
            .any(|q| q["provider"] == "acme" && !q["cooldown_until"].is_null())
    });
    assert!(cooled, "no cooldown for acme: {quotas}");
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target, &[]);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn plugin_new_refuses_in_words() {
    let work = tempfile::tempdir().unwrap();
    let (ok, text) = run(&mut plugin(work.path(), &["new", "Acme_AI"]));
    assert!(
        !ok && text.contains("`Acme_AI` cannot name a plugin"),
        "{text}"
    );

    std::fs::create_dir_all(work.path().join("taken")).unwrap();
    std::fs::write(work.path().join("taken/notes.txt"), "mine").unwrap();
    let (ok, text) = run(&mut plugin(work.path(), &["new", "taken"]));
    assert!(
        !ok && text.contains("already exists and is not empty"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(work.path().join("taken/notes.txt")).unwrap(),
        "mine"
    );

    let (ok, text) = run(&mut plugin(
        work.path(),
        &["new", "lost", "--sdk", "/nowhere/sdk"],
    ));
    assert!(
        !ok && text.contains("/nowhere/sdk is not the tollgate-sdk crate"),
        "{text}"
    );
    assert!(!work.path().join("lost").exists());

    let (ok, text) = run(&mut plugin(work.path(), &["build", "empty"]));
    assert!(!ok && text.contains("no Cargo.toml in empty"), "{text}");
}

/// One bad file a check must name, and what it must say.
struct Bad {
    file: PathBuf,
    says: &'static str,
    hint: &'static str,
    env: Option<(&'static str, &'static str)>,
}

#[test]
fn check_says_what_is_wrong_with_each_kind_of_bad_file() {
    let work = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let openai = std::fs::read(fixture("openai")).unwrap();
    let bad = [
        Bad {
            file: write("text.wasm", b"hello"),
            says: "it is not WebAssembly (the file starts with 68 65 6c 6c)",
            hint: "tollgate plugin build",
            env: None,
        },
        Bad {
            file: write("empty.wasm", b""),
            says: "it is not WebAssembly (the file starts with nothing: it is empty)",
            hint: "tollgate plugin build",
            env: None,
        },
        Bad {
            file: write("core.wasm", b"\0asm\x01\0\0\0"),
            says: "it is a core WebAssembly module, not a component",
            hint: "wasm32-wasip2",
            env: None,
        },
        Bad {
            file: write("torn.wasm", &openai[..openai.len() / 2]),
            says: "not a valid WebAssembly component",
            hint: "cut short",
            env: None,
        },
        Bad {
            file: fixture("stranger"),
            says: "it exports neither tollgate:plugin/adapter nor tollgate:plugin/policy (0.1.x); it exports example:greeter/greet@1.0.0",
            hint: "export_adapter!",
            env: None,
        },
        Bad {
            file: fixture("future"),
            says: "it is built against tollgate:plugin@0.2.0; this host speaks 0.1.0 to 0.1.2",
            hint: "0.1 series",
            env: None,
        },
        Bad {
            file: fixture("partial"),
            says: "tollgate:plugin/adapter@0.1.2 has no function `info`",
            hint: "partial copy of the contract",
            env: None,
        },
        Bad {
            file: fixture("mistyped"),
            says: "`info` does not have the type the WIT gives it",
            hint: "partial copy of the contract",
            env: None,
        },
        Bad {
            file: fixture("anthropic"),
            says: "it could not be instantiated within the sandbox's limits",
            hint: "TOLLGATE_PLUGIN_MEMORY_MB",
            env: Some(("TOLLGATE_PLUGIN_MEMORY_MB", "1")),
        },
    ];
    for case in &bad {
        let mut command = plugin(work.path(), &["check"]);
        command.arg(&case.file);
        if let Some((name, value)) = case.env {
            command.env(name, value);
        }
        let (ok, text) = run(&mut command);
        let name = case.file.file_name().unwrap().to_string_lossy();
        assert!(!ok, "{name} must fail the check: {text}");
        assert!(text.contains(&format!("{name}: rejected: ")), "{text}");
        assert!(
            text.contains(case.says),
            "{name}: expected {:?} in:\n{text}",
            case.says
        );
        assert!(
            text.contains("hint: ") && text.contains(case.hint),
            "{name}: expected a hint with {:?}:\n{text}",
            case.hint
        );
    }

    let (ok, text) = run(plugin(work.path(), &["check"]).arg(fixture("legacy")));
    assert!(
        ok && text.contains("built against tollgate:plugin@0.1.0"),
        "{text}"
    );
    let (ok, text) = run(plugin(work.path(), &["check"]).arg(fixture("openai")));
    assert!(ok && text.contains("(no_std)"), "{text}");
}
