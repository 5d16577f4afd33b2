//! What the sequencer needs to know of the cluster's durability: how far back it may
//! forget acknowledged writes (`durability_horizon`), and whether it may just have
//! (`outages`: a node this process was connected to lost every connection, as when
//! it is killed and restarted).
//!
//! With `commitlog_sync: periodic` (the default of Cassandra and ScyllaDB) a node
//! acknowledges a write before its commit log is synced, every
//! `commitlog_sync_period` (10 s by default); killed, it comes back without the
//! writes of its last period. A cluster with replicas keeps them unless the
//! replicas fail together (a zone, a power cut). Nothing in CQL says a node forgot,
//! so a node that lost its connections is taken as one that may have.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scylla::client::session::Session;

/// How often the store looks at its connections on its own (besides every call of
/// `outages`).
pub(super) const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The cluster's connectivity as last seen, and the outages counted so far.
pub(super) struct Durability {
    pub(super) horizon: Duration,
    /// Nodes (host ids) with at least one open connection at the last look.
    connected: Mutex<HashSet<uuid::Uuid>>,
    outages: AtomicU64,
}

impl Durability {
    pub(super) fn new(session: &Session, horizon: Duration) -> Self {
        let d = Self {
            horizon,
            connected: Mutex::new(HashSet::new()),
            outages: AtomicU64::new(0),
        };
        d.look(session);
        d
    }

    /// Looks at every node's pool now; a node connected at the last look and not now
    /// is an outage. Cheap (the driver's cluster state is a snapshot behind an
    /// atomic pointer, each pool's state one load), so it runs on every call: the
    /// sequencer calls it before each write, and the store every `LOOK_EVERY`. A
    /// killed node is down for seconds (a restart replays its commit log), far longer
    /// than between two looks, so no write can reach it after it restarts unnoticed.
    pub(super) fn outages(&self, session: &Session) -> u64 {
        self.look(session);
        self.outages.load(Ordering::Acquire)
    }

    fn look(&self, session: &Session) {
        let state = session.get_cluster_state();
        let now: HashSet<uuid::Uuid> = state
            .get_nodes_info()
            .iter()
            .filter(|n| n.is_connected())
            .map(|n| n.host_id)
            .collect();
        let mut connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        let lost = connected.difference(&now).count();
        if lost > 0 {
            self.outages.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                nodes = lost,
                "store nodes lost every connection: they may come back without their last acknowledged writes"
            );
        }
        *connected = now;
    }
}

/// Warns at start-up when the cluster's commit log can lose more than the horizon
/// covers: periodic sync with a period longer than `horizon` (read from Cassandra's
/// `system_views.settings` or ScyllaDB's `system.config`; skipped when neither
/// answers).
pub(super) async fn check_sync(session: &Session, horizon: Duration) {
    let Some((mode, period_ms)) = commitlog_sync(session).await else {
        return;
    };
    if mode != "periodic" {
        return;
    }
    let period = Duration::from_millis(period_ms.unwrap_or(10_000));
    if horizon < period {
        tracing::warn!(
            commitlog_sync = %mode,
            period_ms = period.as_millis() as u64,
            horizon_secs = horizon.as_secs(),
            "the store syncs its commit log periodically: a node killed (or every replica at once) loses the writes of its last period, more than scylla.durability_horizon_secs covers; raise it to at least the period, or use commitlog_sync: batch"
        );
    } else {
        tracing::info!(
            period_ms = period.as_millis() as u64,
            horizon_secs = horizon.as_secs(),
            "the store syncs its commit log periodically; the sequencer keeps its offsets that far behind and re-applies the window after a store outage"
        );
    }
}

/// (`commitlog_sync`, its period in ms if periodic), as the contacted node reports it.
async fn commitlog_sync(session: &Session) -> Option<(String, Option<u64>)> {
    // Cassandra 4+: a virtual table of settings, values as text.
    let cassandra = "SELECT name, value FROM system_views.settings WHERE name IN ('commitlog_sync', 'commitlog_sync_period', 'commitlog_sync_period_in_ms')";
    // ScyllaDB: its configuration as a table.
    let scylla = "SELECT name, value FROM system.config WHERE name IN ('commitlog_sync', 'commitlog_sync_period_in_ms')";
    for cql in [cassandra, scylla] {
        let Ok(r) = session.query_unpaged(cql, ()).await else {
            continue;
        };
        let Ok(rows) = r.into_rows_result() else {
            continue;
        };
        let Ok(rows) = rows.rows::<(String, Option<String>)>() else {
            continue;
        };
        let mut mode = None;
        let mut period = None;
        for (name, value) in rows.flatten() {
            let value = value.unwrap_or_default();
            let value = value.trim_matches('"').to_owned();
            if name == "commitlog_sync" {
                mode = Some(value);
            } else {
                period = parse_ms(&value).or(period);
            }
        }
        if let Some(mode) = mode {
            return Some((mode, period));
        }
    }
    None
}

/// "10000", "10000ms", "10s" as milliseconds.
fn parse_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.trim().parse().ok();
    }
    if let Some(s) = v.strip_suffix('s') {
        return s.trim().parse::<u64>().ok().map(|s| s * 1000);
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn sync_periods_parse_in_each_spelling() {
        assert_eq!(parse_ms("10000"), Some(10_000));
        assert_eq!(parse_ms("10000ms"), Some(10_000));
        assert_eq!(parse_ms("10s"), Some(10_000));
        assert_eq!(parse_ms("soon"), None);
    }
}
