//! Bodies each checker accepts and refuses, and the message it gives.

use super::*;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Chat {
    messages: ChatMessages,
    #[serde(default)]
    temperature: Option<f64>,
}

fn error(body: &str) -> ApiError {
    let e = serde_json::from_str::<Chat>(body).err().expect("refused");
    field_error::<Chat>(body.as_bytes(), e)
}

fn ok(body: &str) -> TextSize {
    serde_json::from_str::<Chat>(body)
        .unwrap_or_else(|e| panic!("{body}: {e}"))
        .messages
        .0
}

#[test]
fn a_misspelt_content_is_named() {
    let e = error(r#"{"messages":[{"role":"user","con[tent":"hi"}]}"#);
    assert_eq!(
        e.message,
        "invalid `messages[0]`: a `user` message needs `content`"
    );
    assert_eq!(e.param.as_deref(), Some("messages[0]"));
}

#[test]
fn wrong_types_name_their_field() {
    let cases = [
        (
            r#"{"messages":[{"role":"user","content":1}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"messages":[{"role":"wizard","content":"x"}]}"#,
            "messages[0].role",
        ),
        (r#"{"messages":[{"content":"x"}]}"#, "messages[0]"),
        (r#"{"messages":["hi"]}"#, "messages[0]"),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "temperature",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"text":"x"}]}]}"#,
            "messages[0].content[0]",
        ),
        (
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}"#,
            "messages[0].content[0].text",
        ),
        (
            r#"{"messages":[{"role":"tool","content":"42"}]}"#,
            "messages[0]",
        ),
        (
            r#"{"messages":[{"role":"user","content":null}]}"#,
            "messages[0]",
        ),
        (r#"{"messages":[{"role":"assistant"}]}"#, "messages[0]"),
        (
            r#"{"messages":[{"role":"assistant","tool_calls":[1]}]}"#,
            "messages[0].tool_calls[0]",
        ),
    ];
    for (body, path) in cases {
        let e = error(body);
        assert_eq!(e.param.as_deref(), Some(path), "{body}: {}", e.message);
        assert!(e.message.contains(&format!("`{path}`")), "{}", e.message);
        assert!(!e.message.contains("at line"), "{}", e.message);
    }
    let e = error(r#"{"messages":[{"role":"user","content":"x"}"#);
    assert!(e.message.contains("not valid JSON"), "{}", e.message);
}

#[test]
fn valid_messages_pass_and_are_sized() {
    let size = ok(r#"{"messages":[
        {"role":"system","content":"be terse"},
        {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:x"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"42"},
        {"role":"user","content":"ok","x_vendor_field":{"kept":true}}
    ]}"#);
    assert_eq!(size.items, 5);
    assert_eq!(size.media, 1);
    assert!(size.bytes > 0);
}

#[test]
fn embedding_inputs() {
    let parse = |s: &str| serde_json::from_str::<EmbeddingInput>(s);
    assert_eq!(parse(r#""hello""#).unwrap().0.bytes, 5);
    assert_eq!(parse(r#"["a","bc"]"#).unwrap().0.items, 2);
    assert!(parse("[1,2,3]").is_ok());
    assert!(parse("[[1,2],[3]]").is_ok());
    assert!(parse("5").is_err());
    assert!(parse(r#"{"text":"x"}"#).is_err());
    assert!(parse("[[\"a\"]]").is_err());
}
