//! Fuzz target: a CustomRequest method, checked and resolved to its upstream URL.
//! The invariants are in `ferry::fuzzing::custom_route`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::custom_route(data));
