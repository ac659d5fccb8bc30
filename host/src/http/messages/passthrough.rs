//! What the host reads of an Anthropic answer it relays untranslated (to a
//! client of `/v1/messages` from an adapter that speaks Messages itself):
//! the usage, for the ledgers, and the error event that ends a stream the
//! provider broke off.

use crate::http::events::frame;
use crate::route::native::Protocol;
use bytes::Bytes;
use serde_json::Value;

pub static ANTHROPIC_MESSAGES: Protocol = Protocol {
    name: "anthropic-messages",
    usage,
    error_event,
};

/// The usage in a `message` (whole answer), a `message_start` or a
/// `message_delta`: input tokens (cache reads and writes included, as they
/// count against Anthropic's limits) and output tokens, which
/// `message_delta` reports as a running total.
fn usage(value: &Value, so_far: &mut Option<(u64, u64)>) {
    let usage = match value["type"].as_str() {
        Some("message" | "message_delta") => &value["usage"],
        Some("message_start") => &value["message"]["usage"],
        _ => return,
    };
    if !usage.is_object() {
        return;
    }
    let (mut input, mut output) = so_far.unwrap_or((0, 0));
    let parts = [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ];
    if usage["input_tokens"].is_u64() {
        input = parts.iter().filter_map(|k| usage[*k].as_u64()).sum();
    }
    if let Some(tokens) = usage["output_tokens"].as_u64() {
        output = tokens;
    }
    *so_far = Some((input, output));
}

fn error_event(message: &str) -> Bytes {
    frame("error", &super::errors::body(500, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_read_from_start_and_delta() {
        let mut seen = None;
        usage(
            &json!({"type": "message_start", "message": {"usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1}}}),
            &mut seen,
        );
        assert_eq!(seen, Some((25, 1)));
        usage(&json!({"type": "content_block_delta"}), &mut seen);
        usage(
            &json!({"type": "message_delta", "usage": {"output_tokens": 12}}),
            &mut seen,
        );
        assert_eq!(seen, Some((25, 12)));
        let mut whole = None;
        usage(
            &json!({"type": "message", "usage": {"input_tokens": 3, "output_tokens": 4}}),
            &mut whole,
        );
        assert_eq!(whole, Some((3, 4)));
    }
}
