//! The backend contracts: each `MsgLog` and `Store` scenario written once against the
//! trait and run on the real service (Kafka, a CQL node) and on the embedded backend.

mod msglog;
mod store;
