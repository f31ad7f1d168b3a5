//! Fuzz target: see `eb_tests::fuzzing::rpc`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| eb_tests::fuzzing::rpc(data));
