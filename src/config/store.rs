//! The `[store]` and `[scylla]` sections: which store, its member cache, and how to
//! reach the CQL cluster.

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoreKind {
    Embedded,
    Scylla,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoreConfig {
    pub(crate) kind: StoreKind,
    /// How long a cached group member list or membership is used before it is read
    /// again, ms (0: not cached). Changes applied by this process's sequencer are
    /// seen at once; this bounds how late one applied by another process is seen.
    pub(crate) member_cache_ttl_ms: u64,
    /// Group members held in the member cache, over all groups.
    pub(crate) member_cache_entries: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            member_cache_ttl_ms: 1000,
            member_cache_entries: 1_000_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ScyllaConfig {
    pub(crate) nodes: Vec<String>,
    pub(crate) keyspace: String,
    /// Replication factor used by `ferry migrate` when it creates the keyspace.
    pub(crate) replication: u32,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// How far back the cluster may forget acknowledged writes when its nodes fail
    /// together: its `commitlog_sync_period` with `commitlog_sync: periodic`, 0 with
    /// `batch`. The sequencer keeps its offsets this far behind (`sequencer::horizon`).
    pub(crate) durability_horizon_secs: u64,
}

/// Cassandra's and ScyllaDB's default `commitlog_sync_period` (10 s, periodic sync).
pub(crate) const DURABILITY_HORIZON_SECS: u64 = 10;
/// A horizon longer than this holds offsets back for what is surely a mistake.
const DURABILITY_HORIZON_MAX_SECS: u64 = 600;

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "ferry".to_owned(),
            replication: 1,
            username: None,
            password: None,
            durability_horizon_secs: DURABILITY_HORIZON_SECS,
        }
    }
}

/// Keyspace names are pasted into CQL text, so only plain identifiers are accepted:
/// the one rule, used by validation and by the store before it sends any CQL.
pub(crate) fn keyspace_name_ok(ks: &str) -> bool {
    ks.len() <= 48
        && ks.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) const KEYSPACE_RULE: &str =
    "a letter, then letters, digits and '_', at most 48 characters";

impl StoreConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        if self.member_cache_ttl_ms > 60_000 {
            bad.push(invalid(
                "store.member_cache_ttl_ms",
                "at most 60000 (how long a membership change made elsewhere may go unseen)",
            ));
        }
        if self.member_cache_entries == 0 {
            bad.push(invalid(
                "store.member_cache_entries",
                "must be greater than 0",
            ));
        }
    }
}

impl ScyllaConfig {
    /// The contact points are required only when the CQL cluster is the store.
    pub(super) fn validate(&self, store: StoreKind, bad: &mut Vec<Invalid>) {
        if store == StoreKind::Scylla && self.nodes.is_empty() {
            bad.push(invalid(
                "scylla.nodes",
                "required when store.kind = \"scylla\"",
            ));
        }
        if self.durability_horizon_secs > DURABILITY_HORIZON_MAX_SECS {
            bad.push(invalid(
                "scylla.durability_horizon_secs",
                "at most 600 (the commit log sync period, seconds; 0 with batch sync)",
            ));
        }
        if !keyspace_name_ok(&self.keyspace) {
            bad.push(invalid("scylla.keyspace", KEYSPACE_RULE));
        }
    }
}
