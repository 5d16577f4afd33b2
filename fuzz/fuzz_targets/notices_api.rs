//! Fuzz target: the JSON body of `POST /api/v1/notices`.
//! The invariants are in `ferry::fuzzing::notices_api`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry::fuzzing::notices_api(data));
