//! The client protocol and log records, generated from the repository's proto/.

#[allow(clippy::all, dead_code)]
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

#[allow(clippy::all, dead_code)]
pub mod records {
    include!(concat!(env!("OUT_DIR"), "/records.rs"));
}
