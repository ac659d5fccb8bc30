//! A request every provider would refuse is answered 400 by the gateway,
//! naming the field, before any provider is called: it spends no quota and
//! never becomes a 502 after a tour of the fallback chain.

use crate::support::gateway::{Setup, hello};
use crate::support::mock::Mock;
use serde_json::{Value, json};

/// The `/admin/quotas` `used` of the first provider's `rpd` window.
async fn used_today(gateway: &crate::support::gateway::Gateway) -> f64 {
    let report = gateway.get("/admin/quotas").await.json();
    report["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["provider"] == "first" && row["window"] == "rpd")
        .and_then(|row| row["used"].as_f64())
        .unwrap_or_else(|| panic!("no rpd row in {report}"))
}

#[tokio::test]
async fn invalid_chat_requests_are_refused_before_any_provider() {
    let first = Mock::start("first").await;
    let second = Mock::start("second").await;
    let gateway = Setup::new()
        .provider_with(
            "first",
            &first.base_url(),
            &[("first-chat", "f1")],
            "limits: { rpd: 100 }",
        )
        .provider("second", &second.base_url(), &[("second-chat", "s1")])
        .fallbacks("first-chat: [second-chat]\n")
        .start();
    let user = |message: Value| json!({"model": "first-chat", "messages": [message]});
    let cases = [
        (
            user(json!({"role": "user", "con[tent": "hi"})),
            "messages[0]",
            "needs `content`",
        ),
        (
            user(json!({"role": "user", "content": 42})),
            "messages[0].content",
            "invalid type",
        ),
        (
            user(json!({"role": "wizard", "content": "hi"})),
            "messages[0].role",
            "not a role",
        ),
        (
            user(json!({"rol": "user", "content": "hi"})),
            "messages[0]",
            "missing field `role`",
        ),
        (
            user(json!({"role": "tool", "content": "42"})),
            "messages[0]",
            "tool_call_id",
        ),
        (
            json!({"model": "first-chat", "messages": []}),
            "",
            "at least one message",
        ),
        (
            json!({"model": "first-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}),
            "temperature",
            "invalid type",
        ),
        (
            json!({"model": "first-chat", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
            "stream",
            "invalid type",
        ),
        (
            json!({"model": "first-chat", "messages": [{"role": "user", "content": "hi"}], "tools": {"type": "function"}}),
            "tools",
            "array of objects",
        ),
        (
            json!({"model": "first-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}),
            "max_tokens",
            "invalid value",
        ),
    ];
    for (body, param, says) in cases {
        let reply = gateway.chat(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let message = reply.error_message();
        assert!(message.contains(says), "{body}: {message}");
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}: {message}");
            assert!(message.contains(&format!("`{param}`")), "{message}");
        }
        assert_eq!(reply.header("x-tollgate-attempts"), None, "{body}");
    }
    // Bytes that are not UTF-8, in a field Tollgate ignores (serde_json
    // does not check those strings): 400, not an empty body for the adapter.
    let mut raw =
        br#"{"model": "first-chat", "messages": [{"role": "user", "content": "hi"}], "x_note": ""#
            .to_vec();
    raw.extend_from_slice(b"\xff\xfe\"}");
    let reply = gateway
        .send(
            gateway
                .post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(
        reply
            .error_message()
            .contains("not valid UTF-8 (at byte 84)"),
        "{}",
        reply.text
    );
    assert!(
        first.received().is_empty(),
        "an invalid request reached a provider"
    );
    assert!(
        second.received().is_empty(),
        "an invalid request reached a provider"
    );

    // Fields Tollgate does not know pass through untouched.
    let mut extra = hello("first-chat");
    extra["x_vendor_knob"] = json!({"depth": 3});
    extra["messages"][0]["x_note"] = json!("kept");
    let reply = gateway.chat(extra).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let sent = &first.received()[0].body;
    assert_eq!(sent["x_vendor_knob"]["depth"], 3);
    assert_eq!(sent["messages"][0]["x_note"], "kept");
    assert_eq!(
        used_today(&gateway).await,
        1.0,
        "only the valid request counted"
    );
}

/// A small deterministic generator, so a failing mutation can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every path inside `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{at}/{key}");
                out.push(here.clone());
                pointers(child, here, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let here = format!("{at}/{i}");
                out.push(here.clone());
                pointers(child, here, out);
            }
        }
        _ => {}
    }
}

/// One random change: a field removed or misspelt, or a value of another type.
fn mutate(base: &Value, rng: &mut XorShift) -> Value {
    let mut body = base.clone();
    let mut paths = Vec::new();
    pointers(&body, String::new(), &mut paths);
    paths.retain(|p| p != "/model");
    let path = &paths[rng.below(paths.len())];
    let (parent, key) = path.rsplit_once('/').unwrap();
    let replacements = [
        json!(null),
        json!(7),
        json!(-1.5),
        json!("x"),
        json!(true),
        json!([]),
        json!({}),
        json!([1, "two"]),
    ];
    let replacement = replacements[rng.below(replacements.len())].clone();
    let action = rng.below(3);
    match body.pointer_mut(parent).unwrap() {
        Value::Object(map) if action == 0 => {
            map.remove(key);
        }
        Value::Object(map) if action == 1 => {
            let value = map.remove(key).unwrap();
            let cut = rng.below(key.len() + 1);
            map.insert(format!("{}[{}", &key[..cut], &key[cut..]), value);
        }
        Value::Array(items) if action == 0 => {
            items.remove(key.parse().unwrap());
        }
        _ => *body.pointer_mut(path).unwrap() = replacement,
    }
    body
}

/// 300 randomly mutated chat bodies: none may get a 5xx, every refusal is an
/// OpenAI error, and only the requests answered 200 reached the provider.
#[tokio::test]
async fn mutated_chat_bodies_never_get_a_5xx() {
    let first = Mock::start("first").await;
    let gateway = Setup::new()
        .provider("first", &first.base_url(), &[("first-chat", "f1")])
        .start();
    let base = json!({
        "model": "first-chat",
        "temperature": 0.2,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "tool_choice": "auto",
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "system", "content": "be terse"},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
        ]
    });
    let mut rng = XorShift(0x7011_6a7e);
    let (mut served, mut refused) = (0, 0);
    for _ in 0..300 {
        let body = mutate(&base, &mut rng);
        let reply = gateway.chat(body.clone()).await;
        assert!(
            reply.status < 500,
            "{body} got {}: {}",
            reply.status,
            reply.text
        );
        if reply.status == 200 {
            served += 1;
        } else {
            reply.error_message();
            refused += 1;
        }
    }
    assert_eq!(
        first.received().len(),
        served,
        "a refused request reached the provider"
    );
    assert!(
        refused > 50 && served > 50,
        "served {served}, refused {refused}"
    );
}
