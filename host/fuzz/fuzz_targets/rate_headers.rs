//! See `tollgate::fuzz::rate_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzz::rate_headers(data));
