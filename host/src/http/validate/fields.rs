//! The checkers of an envelope's other fields: arrays of objects (`tools`),
//! objects (`response_format`), `stop`, `tool_choice`, and embedding input.
//! Each sizes what it reads for the ledger, without copying it.

use super::Text;
use crate::ledger::estimate::{Nested, TextSize};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

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
