//! See `tollgate_sdk::sse::fuzz_pieces`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate_sdk::sse::fuzz_pieces(data));
