//! ferry's integration tests: each spawns the real binary on port 0 and drives it
//! with a real WebSocket client. Scenarios written once run on both backends:
//! embedded, and Kafka + a CQL database (started by `scripts/services/services.sh`).

// A test binary: `pub` items are for its own modules.
#![allow(unreachable_pub)]

mod proto;
mod support;

/// Runs scenario `$f(backend)` as two tests, one per backend.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name(crate::support::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kafka_cassandra() {
                super::$name(crate::support::Backend::Kafka).await
            }
        }
    };
}

mod api;
mod auth;
mod budget;
mod budgets;
mod cli;
mod conformance;
mod contract;
mod custom;
mod delay;
mod demo;
mod discovery;
mod discovery_visibility;
mod drain;
mod durability;
mod exposure;
mod fault;
mod flood;
mod fuzz;
mod handover;
mod keepalive;
mod keys;
mod layering;
mod leftovers;
mod limits;
mod matrix;
mod members;
mod messaging;
mod multipod;
mod notices;
mod offline;
mod poison;
mod recovery;
mod sessions;
mod sync;
mod tracing;
