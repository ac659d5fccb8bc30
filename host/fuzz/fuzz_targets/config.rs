//! See `tollgate::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate::fuzz::config(data));
