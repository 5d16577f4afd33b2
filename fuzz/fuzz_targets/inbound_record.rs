//! Fuzz target: one inbound log record, applied by the real sequencer.
//! The invariants are in `ferry::fuzzing::inbound_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::inbound_record(data));
