//! Fuzz target: one binary WebSocket frame from an authenticated client, dispatched to the real handlers.
//! The invariants are in `ferry::fuzzing::session_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::session_frame(data));
