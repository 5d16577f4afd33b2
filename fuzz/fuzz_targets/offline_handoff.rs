//! Fuzz target: offline-push fields handed off, encoded, read back and batched.
//! The invariants are in `ferry::fuzzing::offline_handoff`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::offline_handoff(data));
