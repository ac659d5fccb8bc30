//! Every mode besides chat, through the OpenAI adapter and the real gateway:
//! embeddings, rerank, transcriptions (multipart, spooled and re-sent on
//! fallback), speech (binary, streamed back), voices and images.

use crate::support::gateway::{Gateway, Setup};
use crate::support::scripted::{Answer, Recorded, Scripted};
use serde_json::{Value, json};

/// An OpenAI-compatible server answering every endpoint the way OpenAI,
/// talkies and sd.cpp do.
pub(crate) async fn openai_like(name: &'static str) -> Scripted {
    Scripted::start(move |request: &Recorded| match request.path.as_str() {
        "/v1/embeddings" => Answer::json(
            200,
            json!({"object": "list", "model": request.json()["model"],
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
                   "usage": {"prompt_tokens": 7, "total_tokens": 7}}),
        ),
        "/v1/rerank" => Answer::json(
            200,
            json!({"model": request.json()["model"], "usage": {"total_tokens": 12},
                   "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "b"}}]}),
        ),
        "/v1/audio/transcriptions" => transcription(name, request),
        "/v1/audio/speech" => Answer::bytes("audio/mpeg", &audio()),
        "/v1/audio/voices" => Answer::json(200, json!({"voices": ["af_heart", "bm_george"]})),
        "/v1/images/generations" => {
            let image = if request.json()["response_format"] == "b64_json" {
                json!({"b64_json": "iVBORw0KGgo="})
            } else {
                json!({"url": "http://127.0.0.1/image.png"})
            };
            Answer::json(200, json!({"created": 1, "data": [image]}))
        }
        other => Answer::json(404, json!({"error": {"message": format!("no {other}")}})),
    })
    .await
}

/// A transcription in the format the form asked for, with its content type.
fn transcription(name: &str, request: &Recorded) -> Answer {
    let body = String::from_utf8_lossy(&request.body);
    let (content_type, text) = if body.contains("\r\n\r\nsrt\r\n") {
        (
            "text/plain; charset=utf-8",
            format!("1\n00:00:00,000 --> 00:00:01,000\nhello from {name}\n"),
        )
    } else if body.contains("\r\n\r\nvtt\r\n") {
        (
            "text/vtt",
            format!("WEBVTT\n\n00:00.000 --> 00:01.000\nhello from {name}\n"),
        )
    } else {
        (
            "application/json",
            json!({"text": format!("hello from {name}")}).to_string(),
        )
    };
    Answer::Body {
        status: 200,
        content_type: content_type.into(),
        body: text.into_bytes(),
    }
}

/// Bytes that look like nothing in particular, large enough to stream in
/// several chunks.
fn audio() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

pub(crate) fn local(mock: &Scripted) -> Setup {
    Setup::new().fragment(
        "local",
        "openai",
        &mock.url("/v1"),
        &[
            ("local-embed", "bge-m3", "embedding"),
            ("local-rerank", "jina-reranker", "rerank"),
            (
                "local-whisper",
                "Systran/faster-whisper-large-v3",
                "transcription",
            ),
            ("local-tts", "hexgrad/Kokoro-82M", "speech"),
            ("local-image", "sd-turbo", "image"),
            ("local-chat", "llama", "chat"),
        ],
        "limits: { tpd: 100000 }",
    )
}

async fn post(gateway: &Gateway, path: &str, body: Value) -> crate::support::gateway::Reply {
    gateway.send(gateway.post(path).json(&body)).await
}

#[tokio::test]
async fn embeddings_rerank_and_images_are_served_and_counted() {
    let mock = openai_like("local").await;
    let gateway = local(&mock).start();

    let reply = post(
        &gateway,
        "/v1/embeddings",
        json!({"model": "local-embed", "input": ["a", "b"], "encoding_format": "float"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["data"][0]["embedding"], json!([0.5, -0.25]));
    assert_eq!(reply.header("x-tollgate-provider"), Some("local-embed"));
    let sent = &mock.received()[0];
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.json()["model"], "bge-m3");
    assert_eq!(sent.json()["input"], json!(["a", "b"]));

    let reply = post(&gateway, "/v1/rerank", json!({"model": "local-rerank", "query": "q", "documents": ["a", "b"], "top_n": 1, "return_documents": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["results"][0]["index"], 1);
    assert_eq!(mock.received()[1].json()["top_n"], 1);

    // Tokens the upstream reported are what the ledger counted.
    let report = gateway.get("/admin/quotas").await.json();
    let tpd = report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["window"] == "tpd")
        .unwrap();
    assert_eq!(tpd["used"].as_f64(), Some(7.0 + 12.0), "{report}");

    for format in ["b64_json", "url"] {
        let reply = post(
            &gateway,
            "/v1/images/generations",
            json!({"model": "local-image", "prompt": "a red fox", "response_format": format}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            reply.json()["data"][0][format].is_string(),
            "{}",
            reply.text
        );
    }
}

#[tokio::test]
async fn a_transcription_upload_reaches_the_upstream_whole_with_its_fields() {
    let mock = openai_like("local").await;
    let gateway = local(&mock).start();
    let audio = audio();
    let form = reqwest::multipart::Form::new()
        .text("model", "local-whisper")
        .text("language", "en")
        .text("diarization", "true")
        .text("timestamp_granularities[]", "word")
        .text("timestamp_granularities[]", "segment")
        .text("response_format", "verbose_json")
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.clone())
                .file_name("call.wav")
                .mime_str("audio/wav")
                .unwrap(),
        );
    let reply = gateway
        .send(gateway.post("/v1/audio/transcriptions").multipart(form))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["text"], "hello from local");

    let sent = &mock.received()[0];
    assert!(
        sent.header("authorization")
            .unwrap()
            .starts_with("Bearer sk-test-local")
    );
    let parts = sent.multipart().await;
    let text = |name: &str| -> Vec<String> {
        parts
            .iter()
            .filter(|(n, f, _)| n == name && f.is_none())
            .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    };
    assert_eq!(text("model"), ["Systran/faster-whisper-large-v3"]);
    assert_eq!(text("diarization"), ["true"]);
    assert_eq!(text("language"), ["en"]);
    assert_eq!(text("timestamp_granularities[]"), ["word", "segment"]);
    let (_, filename, bytes) = parts.iter().find(|(n, _, _)| n == "file").unwrap();
    assert_eq!(filename.as_deref(), Some("call.wav"));
    assert_eq!(bytes.len(), audio.len());
    assert!(bytes[..] == audio[..], "the file arrived altered");
}

#[tokio::test]
async fn transcription_formats_come_back_with_their_content_type() {
    let mock = openai_like("local").await;
    let gateway = local(&mock).start();
    for (format, content_type, start) in [
        ("srt", "text/plain; charset=utf-8", "1\n00:00:00,000"),
        ("vtt", "text/vtt", "WEBVTT"),
        ("json", "application/json", "{\"text\""),
    ] {
        let form = reqwest::multipart::Form::new()
            .text("model", "local-whisper")
            .text("response_format", format)
            .part(
                "file",
                reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.mp3"),
            );
        let reply = gateway
            .send(gateway.post("/v1/audio/transcriptions").multipart(form))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.header("content-type"), Some(content_type));
        assert!(reply.text.starts_with(start), "{format}: {}", reply.text);
    }
}

#[tokio::test]
async fn a_transcription_falls_back_with_the_same_file() {
    let busy = Scripted::start(|_: &Recorded| {
        Answer::json(503, json!({"error": {"message": "model loading"}}))
    })
    .await;
    let spare = openai_like("spare").await;
    let gateway = Setup::new()
        .fragment(
            "busy",
            "openai",
            &busy.url("/v1"),
            &[("busy-whisper", "w", "transcription")],
            "",
        )
        .fragment(
            "spare",
            "openai",
            &spare.url("/v1"),
            &[("spare-whisper", "w", "transcription")],
            "",
        )
        .fallbacks("busy-whisper: [spare-whisper]\n")
        .start();
    let audio = audio();
    let form = reqwest::multipart::Form::new()
        .text("model", "busy-whisper")
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.clone()).file_name("a.wav"),
        );
    let reply = gateway
        .send(gateway.post("/v1/audio/transcriptions").multipart(form))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["text"], "hello from spare");
    assert_eq!(reply.header("x-tollgate-attempts"), Some("2"));
    for mock in [&busy, &spare] {
        let parts = mock.received()[0].multipart().await;
        let (_, _, bytes) = parts.iter().find(|(n, _, _)| n == "file").unwrap();
        assert!(bytes[..] == audio[..], "each attempt sends the whole file");
    }
}

#[tokio::test]
async fn speech_audio_streams_back_untouched() {
    let mock = openai_like("local").await;
    let gateway = local(&mock).start();
    let response = gateway
        .post("/v1/audio/speech")
        .json(&json!({"model": "local-tts", "input": "Hello there.", "voice": "af_heart", "response_format": "mp3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert_eq!(response.headers()["x-tollgate-provider"], "local-tts");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes[..] == audio()[..], "the audio arrived altered");
    let sent = mock.received()[0].json();
    assert_eq!(sent["model"], "hexgrad/Kokoro-82M");
    assert_eq!(sent["voice"], "af_heart");

    let voices = gateway.get("/v1/audio/voices?model=local-tts").await;
    assert_eq!(voices.status, 200, "{}", voices.text);
    assert_eq!(voices.json()["voices"][0], "af_heart");
    let listed = mock.received().pop().unwrap();
    assert_eq!(
        (listed.method.as_str(), listed.path.as_str()),
        ("GET", "/v1/audio/voices")
    );
    let default = gateway.get("/v1/audio/voices").await;
    assert_eq!(default.json()["voices"][1], "bm_george");
    let wrong = gateway.get("/v1/audio/voices?model=local-chat").await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.error_message().contains("serves chat"));
}

#[tokio::test]
async fn bad_requests_get_clear_errors_before_any_provider() {
    let mock = openai_like("local").await;
    let gateway = local(&mock).start();
    let cases = [
        (
            "/v1/embeddings",
            json!({"model": "local-chat", "input": "x"}),
            "serves chat",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "local-embed", "messages": [{"role": "user", "content": "hi"}]}),
            "serves embedding",
        ),
        (
            "/v1/embeddings",
            json!({"model": "local-embed"}),
            "missing field `input`",
        ),
        (
            "/v1/embeddings",
            json!({"model": "local-embed", "input": []}),
            "non-empty",
        ),
        (
            "/v1/rerank",
            json!({"model": "local-rerank", "query": "q", "documents": []}),
            "at least one document",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "local-tts", "input": ""}),
            "`input` must not be empty",
        ),
        (
            "/v1/images/generations",
            json!({"model": "local-image", "prompt": "p", "response_format": "gif"}),
            "response_format",
        ),
    ];
    for (path, body, expected) in cases {
        let reply = post(&gateway, path, body.clone()).await;
        assert_eq!(reply.status, 400, "{path} {body}: {}", reply.text);
        let message = reply.error_message();
        assert!(message.contains(expected), "{path} {body}: {message}");
    }
    let not_multipart = post(
        &gateway,
        "/v1/audio/transcriptions",
        json!({"model": "local-whisper"}),
    )
    .await;
    assert_eq!(not_multipart.status, 400);
    assert!(
        not_multipart
            .error_message()
            .contains("multipart/form-data")
    );
    let no_file = reqwest::multipart::Form::new().text("model", "local-whisper");
    let reply = gateway
        .send(gateway.post("/v1/audio/transcriptions").multipart(no_file))
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("`file`"));
    let wrong_method = gateway.get("/v1/embeddings").await;
    assert_eq!(wrong_method.status, 405);
    assert!(
        mock.received().is_empty(),
        "no bad request reached the upstream"
    );
}
