//! The GPU lease table against mock local backends on a configured 24 GB
//! card: a concurrent mix of chat, transcription, speech and image requests
//! never puts more on the card than it holds, sd.cpp never sees two jobs at
//! once, every request gets an answer or a clear error, and no lease is left
//! held after client disconnects or upstream failures.

use crate::support::gateway::{Gateway, Setup};
use crate::support::local::{Card, Kind, LocalMock};
use crate::support::mock::Mock;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const OLLAMA: &[(&str, u64)] = &[
    ("qwen3-8b", 5_000),
    ("gemma4-e4b", 9_600),
    ("deepseek-16b", 8_900),
    ("llama3.2-3b", 2_000),
    ("broken-1b", 1_000),
    ("slow-7b", 9_600),
];
const TALKIES: &[(&str, u64)] = &[("whisper-large-v3", 4_000), ("qwen3-tts", 3_000)];
const SDCPP: &[(&str, u64)] = &[
    ("flux-schnell", 7_000),
    ("sd-turbo", 1_700),
    ("sdxl", 2_500),
];

struct Rig {
    card: Arc<Card>,
    ollama: LocalMock,
    talkies: LocalMock,
    sdcpp: LocalMock,
    /// The fallback for local chat, served "on the CPU".
    cloud: Mock,
}

async fn rig() -> Rig {
    let card = Arc::new(Card::default());
    Rig {
        ollama: LocalMock::start("ollama-cuda", Kind::Ollama, card.clone(), OLLAMA).await,
        talkies: LocalMock::start("talkies-cuda", Kind::Talkies, card.clone(), TALKIES).await,
        sdcpp: LocalMock::start("sdcpp-cuda", Kind::Sdcpp, card.clone(), SDCPP).await,
        cloud: Mock::start("cloud").await,
        card,
    }
}

/// A fragment of GPU models: (alias, model, mode, MB).
fn local_fragment(
    name: &str,
    adapter: &str,
    base_url: &str,
    local: &str,
    models: &[(&str, &str, &str, u64)],
) -> String {
    let mut yaml = format!(
        "name: {name}\nflag: {flag}\nadapter: {adapter}\nbase_url: {base_url}\ntier: local\ntimeouts: {{ connect: 2, response: 10, idle: 5 }}\nlocal: {local}\nmodels:\n",
        flag = name.to_uppercase().replace('-', "_")
    );
    for (alias, model, mode, mb) in models {
        yaml.push_str(&format!(
            "  - {{ alias: {alias}, model: {model}, mode: {mode}, gpu: {{ device: cuda, vram_mb: {mb} }} }}\n"
        ));
    }
    yaml
}

fn setup(rig: &Rig, card_mb: u64, queue_timeout: f64, idle_ttl: f64) -> Setup {
    let common = format!("{{ idle_ttl: {idle_ttl}, queue_timeout: {queue_timeout} }}");
    let ollama = local_fragment(
        "ollama-cuda",
        "ollama",
        &rig.ollama.base_url(),
        &common,
        &[
            ("q8", "qwen3-8b", "chat", 5_000),
            ("gemma", "gemma4-e4b", "chat", 9_600),
            ("deepseek", "deepseek-16b", "chat", 8_900),
            ("llama3", "llama3.2-3b", "chat", 2_000),
            ("broken", "broken-1b", "chat", 1_000),
            ("slow", "slow-7b", "chat", 9_600),
        ],
    );
    let talkies = local_fragment(
        "talkies-cuda",
        "talkies",
        &rig.talkies.base_url(),
        &common,
        &[
            ("whisper", "whisper-large-v3", "transcription", 4_000),
            ("tts", "qwen3-tts", "speech", 3_000),
        ],
    );
    let sdcpp = local_fragment(
        "sdcpp-cuda",
        "sdcpp",
        &rig.sdcpp.base_url(),
        &format!(
            "{{ concurrency: 1, max_loaded: 1, idle_ttl: {idle_ttl}, queue_timeout: {queue_timeout} }}"
        ),
        &[
            ("flux", "flux-schnell", "image", 7_000),
            ("turbo", "sd-turbo", "image", 1_700),
            ("sdxl", "sdxl", "image", 2_500),
            ("broken-image", "broken-xl", "image", 2_500),
        ],
    );
    Setup::new()
        .file("ollama-cuda.yaml", &ollama)
        .file("talkies-cuda.yaml", &talkies)
        .file("sdcpp-cuda.yaml", &sdcpp)
        .env("OLLAMA_CUDA", "1")
        .env("TALKIES_CUDA", "1")
        .env("SDCPP_CUDA", "1")
        // The fallback runs on the CPU: a local tier too, so `free-first`
        // keeps the chain's order (it would try a free cloud tier first).
        .file(
            "cpu.yaml",
            &format!(
                "name: cpu\nflag: CPU\nadapter: openai\nbase_url: {}\ntier: local\nmodels:\n  - {{ alias: cpu-chat, model: c, mode: chat }}\n",
                rig.cloud.base_url()
            ),
        )
        .env("CPU", "1")
        .fallbacks("broken: [cpu-chat]\nq8: [cpu-chat]\n")
        .env("TOLLGATE_GPU_VRAM_MB", &card_mb.to_string())
}

/// One request of the mix, by kind and model.
async fn send(gateway: &Gateway, kind: &str, alias: &str) -> (u16, String) {
    let request = match kind {
        "chat" | "stream" => gateway.post("/v1/chat/completions").json(&json!({
            "model": alias, "stream": kind == "stream",
            "messages": [{"role": "user", "content": "hi"}]})),
        "transcribe" => gateway.post("/v1/audio/transcriptions").multipart(
            reqwest::multipart::Form::new()
                .text("model", alias.to_owned())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(vec![0u8; 2048]).file_name("a.wav"),
                ),
        ),
        "speech" => gateway
            .post("/v1/audio/speech")
            .json(&json!({"model": alias, "input": "hello", "voice": "alloy"})),
        "image" => gateway
            .post("/v1/images/generations")
            .json(&json!({"model": alias, "prompt": "a fox", "response_format": "b64_json"})),
        other => panic!("no kind {other}"),
    };
    let reply = gateway.send(request).await;
    (reply.status, reply.text)
}

async fn gpu_report(gateway: &Gateway) -> Value {
    let report = gateway.get("/admin/gpu").await;
    assert_eq!(report.status, 200, "{}", report.text);
    report.json()
}

/// Waits until no lease is held and nobody waits.
async fn assert_all_released(gateway: &Gateway) -> Value {
    for _ in 0..100 {
        let report = gpu_report(gateway).await;
        let held: u64 = report["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["holders"].as_u64().unwrap())
            .sum();
        if held == 0 && report["queue"].as_array().unwrap().is_empty() {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("leases still held: {}", gpu_report(gateway).await);
}

#[tokio::test]
async fn a_concurrent_mix_never_overfills_the_card() {
    let rig = rig().await;
    let gateway = Arc::new(setup(&rig, 24_000, 20.0, 300.0).start());
    let mix: Vec<(&str, &str)> = [
        ("chat", "q8"),
        ("stream", "gemma"),
        ("transcribe", "whisper"),
        ("image", "flux"),
        ("chat", "deepseek"),
        ("speech", "tts"),
        ("image", "turbo"),
        ("stream", "llama3"),
        ("chat", "broken"),
        ("image", "sdxl"),
        ("chat", "gemma"),
        ("transcribe", "whisper"),
    ]
    .into_iter()
    .cycle()
    .take(60)
    .collect();
    let tasks: Vec<_> = mix
        .into_iter()
        .map(|(kind, alias)| {
            let gateway = gateway.clone();
            tokio::spawn(async move { (kind, alias, send(&gateway, kind, alias).await) })
        })
        .collect();
    for task in tasks {
        let (kind, alias, (status, text)) = task.await.unwrap();
        if status == 200 {
            continue;
        }
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{kind} {alias}: {status} without an OpenAI error: {text}"));
        assert!(
            error["error"]["message"].is_string(),
            "{kind} {alias}: {text}"
        );
        panic!("{kind} {alias} failed with {status}: {text}");
    }
    assert!(
        rig.card.peak_mb() <= 24_000,
        "the card held {} MB at its peak",
        rig.card.peak_mb()
    );
    assert_eq!(rig.sdcpp.max_jobs(), 1, "sd.cpp saw concurrent jobs");
    assert_eq!(rig.sdcpp.busy_answers(), 0, "sd.cpp answered 503");
    let report = assert_all_released(&gateway).await;
    assert!(
        report["counters"]["evictions"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["device"]["source"], "configured");
    // What the table thinks is resident is what the backends hold.
    let leased = report["leased_mb"].as_u64().unwrap();
    assert_eq!(leased, rig.card.resident_mb(), "{report}");
    // The broken model fell back to the CPU model; its lease was given back.
    assert!(rig.cloud.received().len() >= 5);
    let unloads = rig
        .ollama
        .log()
        .iter()
        .filter(|l| *l == "POST /api/generate")
        .count();
    assert!(unloads > 0, "ollama was never asked to unload");
    // /metrics says the same as the table, and counted every wait.
    let metrics = gateway.get("/metrics").await.text;
    let value = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(series));
        line.unwrap_or_else(|| panic!("no {series} in\n{metrics}"))[series.len()..]
            .trim()
            .parse()
            .unwrap()
    };
    let leased_bytes = leased as f64 * 1024.0 * 1024.0;
    assert_eq!(
        value(r#"tollgate_gpu_vram_bytes{state="leased"}"#),
        leased_bytes
    );
    assert_eq!(
        value(r#"tollgate_gpu_vram_bytes{state="capacity"}"#),
        24_000.0 * 1024.0 * 1024.0
    );
    assert_eq!(value(r#"tollgate_gpu_leases{state="waiting"}"#), 0.0);
    assert_eq!(value(r#"tollgate_gpu_leases{state="in_use"}"#), 0.0);
    let waits: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_gpu_wait_seconds_count"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        waits >= 50.0,
        "every local request waited, if only briefly: {waits}"
    );
}

#[tokio::test]
async fn leases_come_back_after_disconnects_and_failures() {
    let rig = rig().await;
    let gateway = setup(&rig, 24_000, 5.0, 300.0).start();
    // A client that walks away after the first chunk of a stream.
    let response = gateway
        .post("/v1/chat/completions")
        .json(&json!({"model": "q8", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let mut response = response;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    let during = gpu_report(&gateway).await;
    assert_eq!(during["leases"][0]["holders"], 1, "{during}");
    assert_eq!(during["leases"][0]["state"], "in use");
    drop(response);
    assert_all_released(&gateway).await;

    // An upstream failure: the lease is given back, and the chain goes on.
    let (status, text) = send(&gateway, "chat", "broken").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("hello from cloud"), "{text}");
    let report = assert_all_released(&gateway).await;
    let ollama = &report["leases"].as_array().unwrap()[0];
    assert_eq!(ollama["backend"], "ollama-cuda");
    assert_eq!(ollama["state"], "idle");

    // A model the backend cannot load: a clear error, and the table does not
    // count it as resident.
    let (status, text) = send(&gateway, "image", "broken-image").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("could not load the model"), "{text}");
    assert!(text.contains("the weights are corrupt"), "{text}");
    let report = assert_all_released(&gateway).await;
    let sdcpp = report["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["backend"] == "sdcpp-cuda")
        .unwrap();
    assert_eq!(sdcpp["vram_mb"], 0, "{report}");
}

#[tokio::test]
async fn a_request_that_cannot_get_memory_in_time_moves_down_its_chain() {
    let rig = rig().await;
    // Room for gemma (9,600) or whisper (4,000) and q8 (5,000), not gemma and q8.
    let gateway = Arc::new(setup(&rig, 12_000, 1.0, 300.0).start());
    // q8 streams for ~200 ms, holding its lease; gemma needs q8's memory.
    let holder = {
        let gateway = gateway.clone();
        tokio::spawn(async move { send(&gateway, "stream", "q8").await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await;
    let slow = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let reply = gateway
                .send(gateway.post("/v1/chat/completions").json(&json!({
                    "model": "gemma", "messages": [{"role": "user", "content": "hi"}]})))
                .await;
            (
                reply.status,
                reply.header("x-tollgate-skipped").map(str::to_owned),
                reply.text,
            )
        })
    };
    assert_eq!(holder.await.unwrap().0, 200);
    // The stream ended well within gemma's 1 s wait: it got the memory.
    let (status, skipped, text) = slow.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ran gemma4-e4b"), "{text}");
    assert_eq!(skipped, None);
    assert!(rig.card.peak_mb() <= 12_000);

    // Now a 2 s stream holds 9,600 MB: q8 cannot get its 5,000 within its
    // 1 s wait, so its attempt is skipped and its chain moves on to the CPU.
    let long = {
        let gateway = gateway.clone();
        tokio::spawn(async move { send(&gateway, "stream", "slow").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let reply = gateway
        .chat(json!({"model": "q8", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.text.contains("hello from cloud"), "{}", reply.text);
    assert_eq!(reply.header("x-tollgate-skipped"), Some("q8:gpu"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(long.await.unwrap().0, 200);
    let report = assert_all_released(&gateway).await;
    assert_eq!(report["counters"]["timeouts"], 1, "{report}");
    assert!(rig.card.peak_mb() <= 12_000, "{report}");
}

#[tokio::test]
async fn idle_backends_are_unloaded_after_their_ttl() {
    let rig = rig().await;
    let gateway = setup(&rig, 24_000, 5.0, 1.0).start();
    let (status, text) = send(&gateway, "transcribe", "whisper").await;
    assert_eq!(status, 200, "{text}");
    let (status, text) = send(&gateway, "image", "turbo").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(rig.talkies.resident(), ["whisper-large-v3"]);
    assert_eq!(rig.sdcpp.resident(), ["sd-turbo"]);
    let mut report = gpu_report(&gateway).await;
    for _ in 0..60 {
        if report["leases"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        report = gpu_report(&gateway).await;
    }
    assert!(report["leases"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["counters"]["idle_unloads"], 2);
    assert!(rig.talkies.resident().is_empty());
    assert!(rig.sdcpp.resident().is_empty());
    assert!(
        rig.talkies
            .log()
            .contains(&"DELETE /api/ps/whisper-large-v3".to_owned())
    );
    assert!(
        rig.sdcpp
            .log()
            .contains(&"POST /sdcpp/v1/unload".to_owned())
    );
}

/// An sd.cpp whose fragment does not say it runs one job at a time: the
/// first busy answer teaches the gateway its limit, the refused request
/// waits for the slot instead of failing, and later jobs come one by one.
#[tokio::test]
async fn a_backend_that_answers_busy_gets_one_job_at_a_time() {
    let rig = rig().await;
    let sdcpp = local_fragment(
        "sdcpp-cuda",
        "sdcpp",
        &rig.sdcpp.base_url(),
        "{ max_loaded: 1, idle_ttl: 300, queue_timeout: 20 }",
        &[("turbo", "sd-turbo", "image", 1_700)],
    );
    let gateway = Arc::new(
        Setup::new()
            .file("sdcpp-cuda.yaml", &sdcpp)
            .env("SDCPP_CUDA", "1")
            .env("TOLLGATE_GPU_VRAM_MB", "24000")
            .start(),
    );
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let gateway = gateway.clone();
                tokio::spawn(async move { send(&gateway, "image", "turbo").await })
            })
            .collect();
        async move {
            for task in tasks {
                let (status, text) = task.await.unwrap();
                assert_eq!(status, 200, "{text}");
            }
        }
    };
    // The model is loaded by the first job alone.
    burst(1).await;
    burst(6).await;
    let learned = rig.sdcpp.busy_answers();
    assert!(learned >= 1, "the burst never met a busy sd.cpp");
    let report = gpu_report(&gateway).await;
    assert_eq!(report["free_job_slots"]["sdcpp-cuda"], 1, "{report}");
    burst(6).await;
    assert_eq!(
        rig.sdcpp.busy_answers(),
        learned,
        "sd.cpp saw two jobs at once after it said it was busy"
    );
    assert_all_released(&gateway).await;
}
