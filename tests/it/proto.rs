//! The client protocol as generated for ferry itself: tests speak the same wire.

#[allow(clippy::all, dead_code)]
pub mod gateway {
    include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
}

pub use gateway as pb;

#[allow(clippy::all, dead_code)]
pub mod records {
    include!(concat!(env!("OUT_DIR"), "/records.rs"));
}
