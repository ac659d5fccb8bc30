//! Client-side errors and the master key.

use crate::support::gateway::{Setup, hello};
use crate::support::mock::Mock;

#[tokio::test]
async fn bad_requests_get_openai_shaped_errors() {
    let mock = Mock::start("m").await;
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .start();

    let reply = gateway.chat(hello("no-such-model")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert!(reply.error_message().contains("no-such-model"));

    let reply = gateway
        .send(
            gateway
                .post("/v1/chat/completions")
                .body("{\"model\": \"alpha-chat\", \"messages\": ["),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.error_message().contains("not valid JSON"),
        "{}",
        reply.text
    );

    let reply = gateway
        .send(
            gateway
                .post("/v1/chat/completions")
                .body(r#"{"messages": []}"#),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().contains("model"), "{}", reply.text);

    let reply = gateway
        .send(
            gateway
                .post("/v1/chat/completions")
                .body(r#"{"model": "alpha-chat", "messages": "hi"}"#),
        )
        .await;
    assert_eq!(reply.status, 400);

    let reply = gateway.get("/v1/chat/completions").await;
    assert_eq!(reply.status, 405);
    reply.error_message();

    let reply = gateway.get("/v2/nothing").await;
    assert_eq!(reply.status, 404);
    reply.error_message();

    let big = "x".repeat(33 << 20);
    let reply = gateway
        .send(gateway.post("/v1/chat/completions").body(big))
        .await;
    assert_eq!(reply.status, 413);
    reply.error_message();

    assert!(
        mock.received().is_empty(),
        "no bad request reaches an upstream"
    );
}

#[tokio::test]
async fn master_key_is_required_when_set() {
    let mock = Mock::start("m").await;
    let gateway = Setup::new()
        .provider("alpha", &mock.base_url(), &[("alpha-chat", "a1")])
        .env("TOLLGATE_MASTER_KEY", "tg-master-0123456789")
        .start();

    let reply = gateway.chat(hello("alpha-chat")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");

    let wrong = gateway
        .post("/v1/chat/completions")
        .bearer_auth("tg-master-0123456788")
        .json(&hello("alpha-chat"));
    assert_eq!(gateway.send(wrong).await.status, 401);
    let models = gateway.client.get(format!("{}/v1/models", gateway.url));
    assert_eq!(gateway.send(models).await.status, 401);

    let right = gateway
        .post("/v1/chat/completions")
        .bearer_auth("tg-master-0123456789")
        .json(&hello("alpha-chat"));
    let reply = gateway.send(right).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        gateway.get("/health").await.status,
        200,
        "health stays open"
    );
    // The master key is the gateway's, not the provider's.
    assert_eq!(
        mock.received()[0].header("authorization"),
        Some("Bearer sk-test-alpha-secret")
    );
}
