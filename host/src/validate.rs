//! The checks OpenAI's API makes of a request's shape, made before any
//! provider is called: a request every provider would refuse must not spend
//! a request of each candidate's quota on the way to a 502.
//!
//! The checks run inside the one parse of the endpoint's envelope (these
//! types are what it deserializes into), and size the text for the ledger as
//! they go, so a valid request is read once and nothing is copied. Only the
//! fields OpenAI defines are checked; any other field passes untouched, so a
//! provider's new parameter still reaches it. When a check fails, the body is
//! parsed once more with its path tracked ([`field_error`]), so the error
//! names the field as OpenAI's does: `messages[1].content`.

use crate::api::ApiError;
use crate::ledger::estimate::{Nested, TextSize, is_media};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The roles a chat message may have.
const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The error for a body serde rejected: which field, and what is wrong.
pub fn field_error<T: DeserializeOwned>(body: &[u8], e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if matches!(
        e.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::bad_request(format!("the request body is not valid JSON: {e}"));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    let (path, inner) = match serde_path_to_error::deserialize::<_, T>(&mut json) {
        Err(e) => (e.path().to_string(), e.into_inner()),
        // Not reached: the same bytes failed a moment ago.
        Ok(_) => (".".to_owned(), e),
    };
    let inner = inner.to_string();
    let what = without_position(&inner);
    match path.as_str() {
        "." => ApiError::bad_request(format!("invalid request body: {what}")),
        _ => ApiError::bad_request(format!("invalid `{path}`: {what}")).with_param(path),
    }
}

/// serde_json's message less its ` at line 1 column 42` (the path says where).
fn without_position(message: &str) -> &str {
    match message.rsplit_once(" at line ") {
        Some((text, place)) if place.contains(" column ") => text,
        _ => message,
    }
}

/// A chat `messages` array: at least one message, each an object with a
/// known `role` and the fields that role needs, sized as it is checked.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChatMessages(pub TextSize);

impl<'de> Deserialize<'de> for ChatMessages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(MessagesVisitor)
    }
}

struct MessagesVisitor;

impl<'de> Visitor<'de> for MessagesVisitor {
    type Value = ChatMessages;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChatMessages, A::Error> {
        let mut size = TextSize::default();
        while let Some(Message(one)) = seq.next_element()? {
            size.add(one);
            size.items += 1;
        }
        Ok(ChatMessages(size))
    }
}

/// One chat message, sized.
struct Message(TextSize);

/// What a message's `content` was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ContentKind {
    Null,
    Text,
    Parts,
}

/// The fields of a message this module checks.
enum MessageKey {
    Role,
    Content,
    ToolCalls,
    FunctionCall,
    ToolCallId,
    Name,
    Other,
}

impl<'de> Deserialize<'de> for MessageKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor(MessageKey::of))
    }
}

impl MessageKey {
    fn of(key: &str) -> Self {
        match key {
            "role" => MessageKey::Role,
            "content" => MessageKey::Content,
            "tool_calls" => MessageKey::ToolCalls,
            "function_call" => MessageKey::FunctionCall,
            "tool_call_id" => MessageKey::ToolCallId,
            "name" => MessageKey::Name,
            _ => MessageKey::Other,
        }
    }
}

/// Reads an object key without allocating it.
struct KeyVisitor<T>(fn(&str) -> T);

impl<T> Visitor<'_> for KeyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<T, E> {
        Ok((self.0)(key))
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a message object with a `role`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut size = TextSize::default();
        let mut role = None;
        let mut content = None;
        let mut calls = false;
        let mut call_id = false;
        while let Some(key) = map.next_key()? {
            match key {
                MessageKey::Role => {
                    let Role(name) = map.next_value()?;
                    size.bytes += name.len() as u64;
                    role = Some(name);
                }
                MessageKey::Content => {
                    let Content(kind, text) = map.next_value()?;
                    size.add(text);
                    content = Some(kind);
                }
                MessageKey::ToolCalls => {
                    let Objects(text, count) = map.next_value()?;
                    size.add(text);
                    calls |= count > 0;
                }
                MessageKey::FunctionCall => {
                    let Nested(text) = map.next_value()?;
                    size.add(text);
                    calls = true;
                }
                MessageKey::ToolCallId | MessageKey::Name => {
                    let Text(text) = map.next_value()?;
                    size.add(text);
                    call_id |= matches!(key, MessageKey::ToolCallId);
                }
                MessageKey::Other => {
                    let Nested(text) = map.next_value()?;
                    size.add(text);
                }
            }
        }
        let Some(role) = role else {
            return Err(de::Error::missing_field("role"));
        };
        check_message(role, content, calls, call_id).map_err(de::Error::custom)?;
        Ok(Message(size))
    }
}

/// What each role needs, as OpenAI's API requires it.
fn check_message(
    role: &str,
    content: Option<ContentKind>,
    calls: bool,
    call_id: bool,
) -> Result<(), String> {
    match (role, content) {
        ("assistant", None) if !calls => {
            Err("an `assistant` message needs `content` or `tool_calls`".into())
        }
        ("assistant", _) => Ok(()),
        (_, None) => Err(format!("a `{role}` message needs `content`")),
        ("tool", _) if !call_id => Err("a `tool` message needs `tool_call_id`".into()),
        (_, Some(ContentKind::Null)) => Err(format!(
            "the `content` of a `{role}` message must not be null"
        )),
        _ => Ok(()),
    }
}

/// A message's `role`: one of [`ROLES`].
struct Role(&'static str);

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RoleVisitor;
        impl Visitor<'_> for RoleVisitor {
            type Value = Role;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a role (a string)")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Role, E> {
                match ROLES.iter().find(|r| **r == name) {
                    Some(role) => Ok(Role(role)),
                    None => Err(E::custom(format!(
                        "`{name}` is not a role; use one of {}",
                        ROLES.join(", ")
                    ))),
                }
            }
        }
        deserializer.deserialize_str(RoleVisitor)
    }
}

/// A string, sized, never copied.
pub struct Text(pub TextSize);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text(TextSize::of(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A message's `content`: a string, an array of content parts, or null.
struct Content(ContentKind, TextSize);

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContentVisitor)
    }
}

struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, an array of content parts, or null")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Content, E> {
        Ok(Content(ContentKind::Text, TextSize::of(text)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
        Ok(Content(ContentKind::Null, TextSize::default()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
        let mut size = TextSize::default();
        let mut parts = 0;
        while let Some(Part(one)) = seq.next_element()? {
            size.add(one);
            parts += 1;
        }
        if parts == 0 {
            return Err(de::Error::custom(
                "an array of content parts must not be empty",
            ));
        }
        Ok(Content(ContentKind::Parts, size))
    }
}

/// One content part: an object with a string `type`; a `text` part carries
/// its `text` as a string. Parts of other types pass as they are.
struct Part(TextSize);

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PartVisitor)
    }
}

/// The fields of a content part this module checks.
enum PartKey {
    Type,
    Text,
    Media,
    Other,
}

impl<'de> Deserialize<'de> for PartKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor(PartKey::of))
    }
}

impl PartKey {
    fn of(key: &str) -> Self {
        match key {
            "type" => PartKey::Type,
            "text" => PartKey::Text,
            key if is_media(key) => PartKey::Media,
            _ => PartKey::Other,
        }
    }
}

struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = Part;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part object with a `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
        let mut size = TextSize::default();
        let mut text_type = None;
        let mut text = false;
        while let Some(key) = map.next_key()? {
            match key {
                PartKey::Type => {
                    let IsText(is, name) = map.next_value()?;
                    size.add(name);
                    text_type = Some(is);
                }
                PartKey::Text => {
                    let Text(one) = map.next_value()?;
                    size.add(one);
                    text = true;
                }
                PartKey::Media => {
                    map.next_value::<IgnoredAny>()?;
                    size.media += 1;
                }
                PartKey::Other => {
                    let Nested(one) = map.next_value()?;
                    size.add(one);
                }
            }
        }
        match text_type {
            None => Err(de::Error::missing_field("type")),
            Some(true) if !text => Err(de::Error::missing_field("text")),
            _ => Ok(Part(size)),
        }
    }
}

/// A part's `type`: whether it is `text`.
struct IsText(bool, TextSize);

impl<'de> Deserialize<'de> for IsText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TypeVisitor;
        impl Visitor<'_> for TypeVisitor {
            type Value = IsText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a part type (a string)")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<IsText, E> {
                Ok(IsText(name == "text", TextSize::of(name)))
            }
        }
        deserializer.deserialize_str(TypeVisitor)
    }
}

/// An array of objects (`tools`, `tool_calls`), sized, and how many.
#[derive(Debug, Default, Clone, Copy)]
pub struct Objects(pub TextSize, pub u64);

impl<'de> Deserialize<'de> for Objects {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectsVisitor;
        impl<'de> Visitor<'de> for ObjectsVisitor {
            type Value = Objects;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Objects, A::Error> {
                let mut size = TextSize::default();
                let mut count = 0;
                while let Some(Object(one)) = seq.next_element()? {
                    size.add(one);
                    count += 1;
                }
                Ok(Objects(size, count))
            }
        }
        deserializer.deserialize_seq(ObjectsVisitor)
    }
}

/// A JSON object, sized (`response_format`, `stream_options`, a tool).
#[derive(Debug, Default, Clone, Copy)]
pub struct Object(pub TextSize);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut size = TextSize::default();
                while map.next_key::<IgnoredAny>()?.is_some() {
                    let Nested(one) = map.next_value()?;
                    size.add(one);
                }
                Ok(Object(size))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// `stop`: a string or an array of strings.
pub struct Stop;

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StopVisitor;
        impl<'de> Visitor<'de> for StopVisitor {
            type Value = Stop;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Stop, E> {
                Ok(Stop)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stop, A::Error> {
                while seq.next_element::<Text>()?.is_some() {}
                Ok(Stop)
            }
        }
        deserializer.deserialize_any(StopVisitor)
    }
}

/// `tool_choice`: `none`, `auto`, `required`, or an object naming a tool.
pub struct ToolChoice;

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = ToolChoice;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`none`, `auto`, `required` or an object naming a tool")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ToolChoice, E> {
                Ok(ToolChoice)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolChoice, A::Error> {
                while map.next_key::<IgnoredAny>()?.is_some() {
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(ToolChoice)
            }
        }
        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// Embeddings' `input`: a string, or an array of strings, of token ids, or
/// of arrays of token ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmbeddingInput(pub TextSize);

impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InputVisitor { top: true })
    }
}

struct InputVisitor {
    /// The outer value: strings and arrays; inside an array, strings, token
    /// ids and arrays of token ids.
    top: bool,
}

impl<'de> Visitor<'de> for InputVisitor {
    type Value = EmbeddingInput;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.top {
            true => f.write_str("a string or an array of strings or token ids"),
            false => f.write_str("a string, a token id or an array of token ids"),
        }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<EmbeddingInput, E> {
        Ok(EmbeddingInput(TextSize::of(text)))
    }

    fn visit_u64<E: de::Error>(self, token: u64) -> Result<EmbeddingInput, E> {
        match self.top {
            true => Err(E::invalid_type(de::Unexpected::Unsigned(token), &self)),
            // A token id is about a token: three bytes of text.
            false => Ok(EmbeddingInput(TextSize {
                bytes: 3,
                ..TextSize::default()
            })),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EmbeddingInput, A::Error> {
        let mut size = TextSize::default();
        if self.top {
            while let Some(Item(one)) = seq.next_element()? {
                size.add(one.0);
                size.items += 1;
            }
        } else {
            while let Some(_token) = seq.next_element::<u64>()? {
                size.bytes += 3;
            }
        }
        Ok(EmbeddingInput(size))
    }
}

/// One element of an `input` array.
struct Item(EmbeddingInput);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(InputVisitor { top: false })
            .map(Item)
    }
}

#[cfg(test)]
mod tests {
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
}
