//! Hot reload: providers, fallbacks and plugins change under a running
//! gateway; broken files are rejected while the previous version serves.

use crate::support::gateway::{Gateway, Setup, content, fragment, hello, pair};
use crate::support::mock::Mock;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

pub use crate::support::fixtures::fixture;

/// Publishes a file the way authors should: write a temporary name, then
/// rename it into place.
pub fn publish(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The component with a custom section appended: the same code, a new digest.
fn variant(bytes: &[u8], n: u8) -> Vec<u8> {
    let name = b"tollgate-test";
    let payload = [n; 4];
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// Polls `check` until it holds, for up to five seconds.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn plugins(gateway: &Gateway) -> Value {
    gateway.get("/admin/plugins").await.json()
}

pub fn row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {report}"))
}

async fn models(gateway: &Gateway) -> Vec<String> {
    gateway.get("/v1/models").await.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admin_plugins_lists_what_is_loaded() {
    let (_first, _second, gateway) = pair().await;
    let report = plugins(&gateway).await;
    let openai = row(&report, "openai");
    assert_eq!(openai["kind"], "adapter");
    assert_eq!(openai["source"], "bundled");
    assert_eq!(openai["wit_version"], "0.1.2");
    assert_eq!(openai["takes_as_is"], serde_json::json!([]));
    assert_eq!(
        row(&report, "anthropic")["takes_as_is"],
        serde_json::json!(["anthropic-messages"])
    );
    assert_eq!(row(&report, "free-first")["kind"], "policy");
    assert_eq!(row(&report, "most-headroom")["kind"], "policy");
    assert_eq!(openai["loaded"], true);
    assert_eq!(openai["digest"].as_str().unwrap().len(), 64);
    assert!(openai["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert!(openai["last_error"].is_null());
    assert!(report["config"]["last_error"].is_null());
}

#[tokio::test]
async fn a_corrupt_yaml_is_rejected_and_the_old_config_keeps_serving() {
    let (_first, second, gateway) = pair().await;
    let providers = gateway.dir().join("providers");
    publish(&providers.join("first.yaml"), b"name: [unclosed\n");
    eventually("the rejection to be reported", async || {
        plugins(&gateway).await["config"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("first.yaml"))
    })
    .await;
    let reply = gateway.chat(hello("first-chat")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-tollgate-provider"), Some("first-chat"));

    // Fixed, with a new alias: picked up, and the error is cleared.
    let fixed = fragment(
        "first",
        &second.base_url(),
        &[("first-chat", "f1"), ("first-new", "f2")],
        "",
    );
    publish(&providers.join("first.yaml"), fixed.as_bytes());
    eventually("the new alias", async || {
        models(&gateway).await.contains(&"first-new".to_owned())
    })
    .await;
    assert!(plugins(&gateway).await["config"]["last_error"].is_null());
    let reply = gateway.chat(hello("first-new")).await;
    assert_eq!(content(&reply.json()), "hello from second");
    // Both reloads are counted by their outcome (a save can take two).
    let metrics = gateway.get("/metrics").await.text;
    let reloads = |outcome: &str| -> f64 {
        let name = format!("tollgate_reloads_total{{outcome=\"{outcome}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&name));
        line.unwrap_or_else(|| panic!("no {name} in\n{metrics}"))[name.len()..]
            .parse()
            .unwrap()
    };
    assert!(reloads("rejected") >= 1.0);
    assert!(reloads("ok") >= 1.0);
}

#[tokio::test]
async fn a_corrupt_wasm_keeps_the_previous_version_serving() {
    let good = std::fs::read(fixture("openai")).unwrap();
    // Half a file, written in place, as a crash in the middle of a copy
    // would leave it.
    let torn = &good[..good.len() / 2];
    let in_place = |file: &Path, bytes: &[u8]| std::fs::write(file, bytes).unwrap();
    rejected_while_the_previous_version_serves(torn, in_place, "not a valid WebAssembly component")
        .await;
}

#[tokio::test]
async fn an_export_of_the_wrong_type_is_rejected_at_load() {
    // A valid component exporting tollgate:plugin/adapter@0.1.1 whose
    // `info` returns a string instead of a plugin-info record.
    let mistyped = std::fs::read(fixture("mistyped")).unwrap();
    rejected_while_the_previous_version_serves(
        &mistyped,
        publish,
        "`info` does not have the type the WIT gives it",
    )
    .await;
}

/// Replaces the loaded adapter with `bad` (written by `write`) and checks
/// that the rejection is reported with `reason` while the version loaded
/// before keeps serving.
async fn rejected_while_the_previous_version_serves(
    bad: &[u8],
    write: impl Fn(&Path, &[u8]),
    reason: &str,
) {
    let (_first, _second, gateway) = pair().await;
    let file = gateway.dir().join("plugins").join("openai.wasm");
    let good = std::fs::read(fixture("openai")).unwrap();
    publish(&file, &variant(&good, 1));
    eventually("the file to replace the bundled adapter", async || {
        row(&plugins(&gateway).await, "openai")["source"] != "bundled"
    })
    .await;
    let loaded = row(&plugins(&gateway).await, "openai").clone();

    write(&file, bad);
    eventually("the rejection to be reported", async || {
        !row(&plugins(&gateway).await, "openai")["last_error"].is_null()
    })
    .await;
    let report = plugins(&gateway).await;
    let openai = row(&report, "openai");
    assert_eq!(
        openai["digest"], loaded["digest"],
        "the previous version serves"
    );
    assert!(
        openai["last_error"].as_str().unwrap().contains(reason),
        "{openai}"
    );
    assert_eq!(gateway.chat(hello("first-chat")).await.status, 200);
}

#[tokio::test]
async fn a_new_provider_and_its_plugin_work_without_a_restart() {
    let (_first, _second, gateway) = pair().await;
    let mock = Mock::start("newcomer").await;
    publish(
        &gateway.dir().join("plugins").join("newproto.wasm"),
        &std::fs::read(fixture("faulty")).unwrap(),
    );
    let text = fragment("newcomer", &mock.base_url(), &[("newcomer-chat", "n1")], "")
        .replace("adapter: openai", "adapter: newproto")
        .replace("api_key: ${NEWCOMER_API_KEY}\n", "");
    std::fs::write(gateway.dir().join(".env"), "NEWCOMER=1\n").unwrap();
    publish(
        &gateway.dir().join("providers").join("newcomer.yaml"),
        text.as_bytes(),
    );
    eventually("the new alias", async || {
        models(&gateway).await.contains(&"newcomer-chat".to_owned())
    })
    .await;
    let reply = gateway.chat(hello("newcomer-chat")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(content(&reply.json()), "hello from newcomer");
    assert_eq!(row(&plugins(&gateway).await, "newproto")["loaded"], true);
}

#[tokio::test]
async fn config_and_adapter_swaps_under_32_streams_fail_no_request() {
    let mock = Mock::start("steady").await;
    let gateway = Setup::new()
        .provider("steady", &mock.base_url(), &[("steady-chat", "s1")])
        .start();
    let file = gateway.dir().join("plugins").join("openai.wasm");
    let fragment = gateway.dir().join("providers").join("steady.yaml");
    let good = std::fs::read(fixture("openai")).unwrap();
    let stop = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for _ in 0..32 {
        let client = gateway.client.clone();
        let url = format!("{}/v1/chat/completions", gateway.url);
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while Instant::now() < stop {
                let mut request = hello("steady-chat");
                request["stream"] = true.into();
                match client.post(&url).json(&request).send().await {
                    Ok(r) if r.status() == 200 => {
                        let text = r.text().await.unwrap_or_default();
                        if text.contains("steady") && text.contains("[DONE]") {
                            ok += 1;
                        } else {
                            failed.push(text);
                        }
                    }
                    Ok(r) => failed.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let mut digests = std::collections::HashSet::new();
    let mut slowest = Duration::ZERO;
    for n in 0..5 {
        let published = Instant::now();
        publish(&file, &variant(&good, n));
        let before = digests.len();
        eventually("the new version to serve", async || {
            let report = plugins(&gateway).await;
            let openai = row(&report, "openai");
            if openai["source"] == "bundled" {
                return false;
            }
            digests.insert(openai["digest"].as_str().unwrap().to_owned());
            digests.len() > before
        })
        .await;
        slowest = slowest.max(published.elapsed());
        // And a config swap: the fragment gains an alias.
        let alias = format!("steady-extra-{n}");
        let text = crate::support::gateway::fragment(
            "steady",
            &mock.base_url(),
            &[("steady-chat", "s1"), (&alias, "s1")],
            "",
        );
        publish(&fragment, text.as_bytes());
        eventually("the new config to serve", async || {
            models(&gateway).await.contains(&alias)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut ok, mut failed) = (0, Vec::new());
    for client in clients {
        let (n, mut f) = client.await.unwrap();
        ok += n;
        failed.append(&mut f);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 200, "too little load to mean anything: {ok}");
    assert_eq!(digests.len(), 5);
    assert!(slowest < Duration::from_secs(3), "a swap took {slowest:?}");
}

/// A Kubernetes ConfigMap mounted as the config folder: every file is a
/// symlink through `..data`, and an update writes a new timestamped folder
/// and renames a `..data_tmp` symlink over `..data`. No `.yaml` name changes.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_swap_of_the_data_symlink_reloads() {
    use std::os::unix::fs::symlink;
    let alpha = Mock::start("alpha").await;
    let beta = Mock::start("beta").await;
    let gateway = Setup::new().enable("alpha").start();
    let providers = gateway.dir().join("providers");
    let version = |n: u32, base_url: &str| {
        let folder = format!("..2026_12_07_00_00_0{n}.000000001");
        std::fs::create_dir(providers.join(&folder)).unwrap();
        let text = fragment("alpha", base_url, &[("alpha-chat", "a1")], "");
        std::fs::write(providers.join(&folder).join("alpha.yaml"), text).unwrap();
        folder
    };
    // The first mount, as the kubelet lays it out.
    let first = version(1, &alpha.base_url());
    symlink(&first, providers.join("..data")).unwrap();
    symlink("..data/alpha.yaml", providers.join("alpha.yaml")).unwrap();
    eventually("the first mount to serve", async || {
        let reply = gateway.chat(hello("alpha-chat")).await;
        reply.status == 200 && content(&reply.json()) == "hello from alpha"
    })
    .await;

    // The update: a new folder, then `..data_tmp` renamed over `..data`.
    let second = version(2, &beta.base_url());
    symlink(&second, providers.join("..data_tmp")).unwrap();
    std::fs::rename(providers.join("..data_tmp"), providers.join("..data")).unwrap();
    eventually("the swapped ConfigMap to serve", async || {
        let reply = gateway.chat(hello("alpha-chat")).await;
        reply.status == 200 && content(&reply.json()) == "hello from beta"
    })
    .await;
}
