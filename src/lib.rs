//! ferry: a Kafka-backed, event-sourced instant-messaging WebSocket gateway.
//!
//! Map of the crate:
//! - `cli`       — command line: serve, token, client
//! - `config`    — the typed configuration tree (file, `FERRY_*` env, defaults)
//! - `telemetry` — logs and metrics
//! - `budget`    — the size budget: the largest record the log takes, and what that leaves a client
//! - `app`       — wiring of backends and roles
//! - `shutdown`  — the shutdown tree: roles under one tracker, a failed role fails the process
//! - `backends`  — opens the configured log and store; the topics ferry uses
//! - `backoff`   — waits between retries, ended early by shutdown
//! - `secrets`   — development JWT secret and service token in data_dir
//! - `http`      — WebSocket upgrade, health, readiness, metrics
//! - `demo`      — the browser chat demo at /demo (development secret, loopback only)
//! - `serve`     — the accept loop: bounded request heads, bounded drain
//! - `proto`     — generated protobuf in, domain types out
//! - `domain`    — UserId, ConvId, Seq, Message, Notice
//! - `access`    — who may read and write which conversation
//! - `gateway`   — sessions, auth, socket lifecycle, request handlers, wire errors
//! - `pipeline`  — sequencer, delay tiers, pusher, notices, push routing hook, offline hand-off and forwarder
//! - `presence`  — which pods hold which users' sockets: published and followed
//! - `connections` — this pod's socket registry, push framing and answer byte budgets (gateway and pusher share it)
//! - `msglog`    — the log trait with its Kafka and embedded backends
//! - `store`     — the store trait with its ScyllaDB and embedded backends
//! - `api`       — the server API for backends
//! - `faults`    — named fault points that tests arm through `FERRY_FAULTS`
//! - `redact`    — secrets out of printed URLs, query strings and settings
//! - `outbound`  — the HTTP client policy of calls ferry makes: no redirects followed
//! - `recovery`  — replay (rebuild the store from the log), topic and group admin, store checksum
//! - `client`    — a small protocol client for operators and the walkthrough
//! - `testkit`   — the backends' public face for the contract tests in tests/it/contract
//! - `fuzzing`   — entry points and invariants for the fuzz targets in `fuzz/` (not an API)
//! - `heap_profile` — allocation counting by call site (feature `dhat-heap`, measurement only)

mod access;
mod api;
mod app;
mod backends;
mod backoff;
mod budget;
pub mod cli;
mod client;
mod config;
mod connections;
mod demo;
mod domain;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
#[cfg(feature = "dhat-heap")]
mod heap_profile;
mod http;
mod msglog;
mod outbound;
mod pipeline;
mod presence;
mod proto;
#[cfg(test)]
mod proto_vectors;
mod recovery;
mod redact;
mod secrets;
mod serve;
mod shutdown;
mod store;
mod telemetry;

/// The two backend traits, their implementations and the types in their signatures,
/// public only so that the integration tests (tests/it/contract) can run the same
/// scenarios on real Kafka, a real CQL node and the embedded backends. Not an API.
#[doc(hidden)]
pub mod testkit {
    pub use crate::domain::{Message, MsgOptions, OfflinePush, now_ms};
    pub use crate::msglog::embedded::EmbeddedLog;
    pub use crate::msglog::kafka::{KafkaLog, KafkaSettings};
    pub use crate::msglog::{
        LogError, LogRecord, MsgLog, Outgoing, Retention, Subscription, TRACEPARENT, TopicInfo,
        TopicSpec, Watermarks,
    };
    pub use crate::pipeline::delay_bench::{
        record as delay_record, run as delay_role, topics as delay_topics,
    };
    pub use crate::store::convs::{ConvEntry, ConvIndexWrite};
    pub use crate::store::embedded::EmbeddedStore;
    pub use crate::store::scylla::{
        MigrateReport, ScyllaSettings, ScyllaStore, drop_keyspace, migrate,
    };
    pub use crate::store::{
        Claim, ConvState, MemberWrite, MessageWrite, RowWrite, Step, Store, StoreError, Stored,
        VERSION_BASE, Writes, version, written_by,
    };
}
