//! Fuzz target: a WebSocket upgrade's query string and the JWT in it.
//! The invariants are in `ferry::fuzzing::connect_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::connect_query(data));
