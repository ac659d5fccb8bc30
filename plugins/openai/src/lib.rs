//! The adapter for every OpenAI-compatible API: OpenAI itself, Groq, Cerebras,
//! OpenRouter, the HuggingFace router, Mistral, the claudebox and pibox agent
//! boxes. Its logic lives in the SDK ([`tollgate_sdk::compat`]), where the
//! local-backend adapters (`ollama`, `talkies`, `sdcpp`) reuse it and add
//! their control calls.

#![cfg_attr(not(test), no_std)]

tollgate_sdk::export_adapter!(tollgate_sdk::compat::OpenAiCompatible);
