//! How many tokens a request will spend, guessed before it is sent.
//!
//! The guess is only held until the provider reports real usage, so it errs
//! on the high side (a byte of text is counted as a third of a token, where
//! tokenizers average nearer a quarter) without parsing the request twice:
//! [`TextSize`] measures the text while the envelope is deserialized.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Bytes of text counted as one token.
const BYTES_PER_TOKEN: u64 = 3;
/// Per-message overhead of chat templates (role markers and separators).
const TOKENS_PER_MESSAGE: u64 = 4;
/// An image in a chat message: OpenAI's price for one high-detail tile set.
const TOKENS_PER_IMAGE: u64 = 765;

/// The text in a JSON value: bytes of every string, and the images and audio
/// clips found in it (whose base64 payloads are not text).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextSize {
    pub bytes: u64,
    pub media: u64,
    /// Elements of the top-level array (messages, inputs).
    pub items: u64,
}

impl TextSize {
    /// The size of one plain string.
    pub fn of(text: &str) -> Self {
        TextSize {
            bytes: text.len() as u64,
            ..TextSize::default()
        }
    }

    pub(crate) fn add(&mut self, other: TextSize) {
        self.bytes += other.bytes;
        self.media += other.media;
    }

    pub fn tokens(&self) -> u64 {
        self.bytes.div_ceil(BYTES_PER_TOKEN)
            + self.media * TOKENS_PER_IMAGE
            + self.items * TOKENS_PER_MESSAGE
    }
}

impl<'de> Deserialize<'de> for TextSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor { top: true })
    }
}

struct SizeVisitor {
    /// Whether this is the top-level value, whose elements are counted.
    top: bool,
}

/// Sizes a nested value.
pub(crate) struct Nested(pub TextSize);

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(SizeVisitor { top: false })
            .map(Nested)
    }
}

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = TextSize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<TextSize, E> {
        Ok(TextSize {
            bytes: text.len() as u64,
            ..TextSize::default()
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<TextSize, E> {
        Ok(TextSize::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextSize, A::Error> {
        let mut size = TextSize::default();
        while let Some(Nested(item)) = seq.next_element()? {
            size.add(item);
            if self.top {
                size.items += 1;
            }
        }
        Ok(size)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextSize, A::Error> {
        let mut size = TextSize::default();
        while let Some(MediaKey(media)) = map.next_key()? {
            if media {
                map.next_value::<IgnoredAny>()?;
                size.media += 1;
            } else {
                let Nested(value) = map.next_value()?;
                size.add(value);
            }
        }
        Ok(size)
    }
}

/// Whether an object key holds media (`image_url`, `input_audio`, `file`),
/// read without allocating the key.
struct MediaKey(bool);

impl<'de> Deserialize<'de> for MediaKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = MediaKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<MediaKey, E> {
                Ok(MediaKey(is_media(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Keys whose values are media payloads, counted as images, not text.
pub(crate) fn is_media(key: &str) -> bool {
    matches!(key, "image_url" | "input_audio" | "file")
}

/// A chat `messages` array, sized; anything but an array is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct Messages(pub TextSize);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_seq(SizeVisitor { top: true })
            .map(Messages)
    }
}

/// What one request is expected to spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    pub prompt_tokens: u64,
    /// The client's cap on generated tokens, if it set one; otherwise the
    /// model's configured guess is used.
    pub completion_cap: Option<u64>,
}

impl Estimate {
    pub fn new(prompt: TextSize, extra: Option<TextSize>, completion_cap: Option<u64>) -> Self {
        let extra = extra.map_or(0, |size| size.tokens());
        Estimate {
            prompt_tokens: prompt.tokens().saturating_add(extra),
            completion_cap,
        }
    }

    /// Prompt and completion tokens, given the model's default completion guess.
    pub fn tokens(&self, default_completion: u64) -> (u64, u64) {
        (
            self.prompt_tokens,
            self.completion_cap.unwrap_or(default_completion),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        messages: TextSize,
        #[serde(default)]
        tools: Option<TextSize>,
    }

    #[test]
    fn counts_text_messages_and_images() {
        let body: Body = serde_json::from_str(
            r#"{"messages":[
                {"role":"system","content":"You are terse."},
                {"role":"user","content":[
                    {"type":"text","text":"What is in this picture?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}
                ]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(body.messages.items, 2);
        assert_eq!(body.messages.media, 1);
        // Role names, content strings and part types; never the base64.
        let text = "system".len()
            + "You are terse.".len()
            + "user".len()
            + "text".len()
            + "What is in this picture?".len()
            + "image_url".len();
        assert_eq!(body.messages.bytes, text as u64);
        let estimate = Estimate::new(body.messages, body.tools, Some(50));
        assert_eq!(
            estimate.tokens(512),
            ((text as u64).div_ceil(3) + 765 + 8, 50)
        );
    }

    #[test]
    fn messages_must_be_an_array() {
        #[derive(Deserialize)]
        struct Chat {
            #[allow(dead_code)]
            messages: Messages,
        }
        assert!(serde_json::from_str::<Chat>(r#"{"messages":"hi"}"#).is_err());
        assert!(serde_json::from_str::<Chat>(r#"{"messages":[]}"#).is_ok());
    }

    #[test]
    fn tools_and_escapes_count() {
        let body: Body = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"caf\u00e9 \"quoted\""}],
                "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}"#,
        )
        .unwrap();
        assert_eq!(
            body.messages.bytes,
            ("user".len() + "café \"quoted\"".len()) as u64
        );
        let tools = body.tools.unwrap();
        assert_eq!(
            tools.bytes,
            ("function".len() + "get_weather".len() + "object".len()) as u64
        );
        let estimate = Estimate::new(body.messages, Some(tools), None);
        assert_eq!(estimate.tokens(256).1, 256);
    }
}
