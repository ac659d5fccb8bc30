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

mod fields;
pub use fields::{EmbeddingInput, Object, Objects, Stop, ToolChoice};

#[cfg(test)]
mod tests;
