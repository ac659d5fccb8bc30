//! What the benches share: the processes they start, the load they apply,
//! how they keep the machine steady, and the request and answer they use.
//! Each bench includes this module and uses part of it.

#![allow(dead_code)]

pub mod load;
pub mod machine;
pub mod processes;
pub mod soak;

/// The environment variable that re-executes a bench binary in a role.
pub const ROLE: &str = "TOLLGATE_BENCH_ROLE";
/// The mock upstream's answer: a small chat completion.
pub const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello from the mock"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#;
/// The chat request every load sends.
pub const REQUEST: &str = r#"{"model":"bench-chat","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}"#;
/// [`REQUEST`] as Anthropic Messages asks it.
pub const MESSAGES_REQUEST: &str = r#"{"model":"bench-chat","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}"#;
/// [`REQUEST`] as OpenAI Responses asks it.
pub const RESPONSES_REQUEST: &str =
    r#"{"model":"bench-chat","input":"Say hello in five words.","max_output_tokens":16}"#;
