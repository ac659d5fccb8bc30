//! Anthropic Messages requests passed through as the client sent them.
//!
//! Only the model changes, from the alias the client asked for to the
//! provider's id; every other field (thinking, `top_k`, cache control,
//! fields newer than this plugin) goes to Anthropic untouched.

/// The client protocol this adapter takes as it is.
pub const PROTOCOL: &str = "anthropic-messages";

/// The client's body with `model` set to the provider's id, every other
/// field copied as the client wrote it, in its order.
pub fn body(client: &str, model: &str) -> Result<Vec<u8>, String> {
    tollgate_sdk::openai::rewrite_request(client, model, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_the_model_changes() {
        let client = r#"{"model":"claude","max_tokens":10,"top_k":5,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hi"}]}"#;
        let sent: Value =
            serde_json::from_slice(&body(client, "claude-sonnet-4-6").unwrap()).unwrap();
        assert_eq!(sent["model"], "claude-sonnet-4-6");
        assert_eq!(sent["top_k"], 5);
        assert_eq!(sent["thinking"]["budget_tokens"], 1024);
        assert!(body("[1]", "m").is_err());
    }
}
