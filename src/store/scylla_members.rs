//! Group members on ScyllaDB/Cassandra, in a model whose reads do not grow with the
//! number of past removals.
//!
//! # Why not one row per member
//!
//! The first model kept a row per (group, member) and deleted the row when a member
//! left. A CQL delete writes a tombstone that lives for `gc_grace_seconds` (10 days);
//! every read of the group's partition scans them all. A big group that many people
//! left then costs a slower read per group message, and past
//! `tombstone_failure_threshold` (100,000) Cassandra refuses the read outright.
//!
//! # The model: overwritten bucket rows
//!
//! A group's current members are spread over `MEMBER_BUCKETS` rows of one partition,
//! `(group_id) bucket`, by a stable hash of the user id. Each row holds its members
//! as one `frozen<map<text, bigint>>` cell (user -> min_seq), rewritten whole on every
//! change of one of its members and never deleted: a frozen collection is a single
//! cell, so an overwrite shadows the old value with no tombstone (a bucket whose last
//! member left holds an empty map). A member list reads at most `MEMBER_BUCKETS` live
//! rows, a membership check one, whatever the group's history.
//!
//! # Why a rewrite stays a pure function of the log
//!
//! A rewrite reads the bucket, applies the member changes to it and writes it back at
//! the version of the (latest) record applied, `USING TIMESTAMP` (see
//! `store::version`). The sequencer applies a group's member changes one record at a
//! time, in log order (they carry the group's key, pipeline::sequencer), so the
//! bucket it reads holds the state after the last record that touched the bucket:
//!
//! - a change older than the bucket's write time (a zombie's late write, or a record
//!   re-applied after a rebalance) is dropped: its write would lose to the newer cell
//!   anyway, and the newer cell already follows it;
//! - a change at the bucket's own version is the same record applied again (its own
//!   partial earlier application, or the owner and a zombie side by side): applying
//!   an add or a removal twice gives the same map, so both write the same cell at the
//!   same version;
//! - otherwise the map written is the previous state with the record's change, the
//!   same for every writer applying the same record.
//!
//! So the cells are the ones per-member rows would hold, grouped, and replay's
//! checksum (members and min_seq per group) is unchanged. A repair by `ferry replay`
//! writes at the group's latest simulated record with `Step::Repair`, above that
//! record's own writes and below the next one's. A change made outside the log
//! (`Store::set_member`, at `VERSION_BASE`) applies only to a bucket the log has not
//! written yet.
//!
//! # Migration
//!
//! `ferry migrate` creates `group_member_sets` and carries the old `group_members`
//! rows forward: each bucket not yet written is built from the old rows and written
//! at the newest write time among them, so any change the log makes afterwards wins.
//! After that nothing reads or writes `group_members`; it can be dropped once every
//! pod runs this version.

use std::collections::{BTreeMap, HashMap};

use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{MemberWrite, StoreError, unavailable};

/// Rows a group's members are spread over. A member list reads this many rows at
/// most; one change rewrites 1/MEMBER_BUCKETS of the group (about 1,600 members,
/// ~50 KB, in a group of 100,000). Part of the schema: changing it re-homes every
/// member.
pub(crate) const MEMBER_BUCKETS: u32 = 64;

/// The bucket of `user`: FNV-1a, stable across builds and platforms (unlike std's
/// hasher), so every process and every version agrees.
pub(crate) fn member_bucket(user: &str) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(MEMBER_BUCKETS)) as i32
}

/// One bucket's members, user -> min_seq.
type Set = BTreeMap<String, i64>;

pub(crate) struct MemberStatements {
    get_bucket: PreparedStatement,
    get_all: PreparedStatement,
    put_bucket: PreparedStatement,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn big(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} does not fit a CQL bigint")))
}

fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative min_seq {v}")))
}

impl MemberStatements {
    pub(crate) async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        // Reads, and writes of a whole cell at a fixed timestamp: idempotent.
        let prep = async |cql: String| super::scylla::prepared(session, cql, true).await;
        Ok(Self {
            get_bucket: prep(format!(
                "SELECT members, WRITETIME(members) FROM {ks}.group_member_sets WHERE group_id = ? AND bucket = ?"
            ))
            .await?,
            get_all: prep(format!("SELECT members FROM {ks}.group_member_sets WHERE group_id = ?")).await?,
            put_bucket: prep(format!(
                "UPDATE {ks}.group_member_sets USING TIMESTAMP ? SET members = ? WHERE group_id = ? AND bucket = ?"
            ))
            .await?,
        })
    }

    /// A bucket's members and the version that wrote them (None: never written).
    async fn bucket(
        &self,
        session: &Session,
        group: &str,
        bucket: i32,
    ) -> Result<(Set, Option<i64>), StoreError> {
        let r = session
            .execute_unpaged(&self.get_bucket, (group, bucket))
            .await
            .map_err(unavailable)?;
        let row = r
            .into_rows_result()
            .map_err(corrupt)?
            .maybe_first_row::<(Option<Set>, Option<i64>)>()
            .map_err(corrupt)?;
        Ok(match row {
            Some((set, at)) => (set.unwrap_or_default(), at),
            None => (Set::new(), None),
        })
    }

    /// Applies one bucket's changes (sorted by version) as described at the top.
    async fn apply(
        &self,
        session: &Session,
        group: &str,
        bucket: i32,
        changes: Vec<&MemberWrite>,
    ) -> Result<(), StoreError> {
        let (mut set, at) = self.bucket(session, group, bucket).await?;
        let mut version = None;
        for c in changes {
            // A change made outside the log (at VERSION_BASE) thus applies only where
            // the log has not written.
            if at.is_some_and(|at| c.version < at) {
                continue;
            }
            match c.min_seq {
                Some(min) => {
                    set.insert(c.user.clone(), big(min)?);
                }
                None => {
                    set.remove(&c.user);
                }
            }
            version = Some(version.map_or(c.version, |v: i64| v.max(c.version)));
        }
        let Some(version) = version else {
            return Ok(());
        };
        session
            .execute_unpaged(&self.put_bucket, (version, &set, group, bucket))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Applies member writes: each touched bucket is read once and written once,
    /// buckets side by side (no two of them share a cell).
    pub(crate) async fn write(
        &self,
        session: &Session,
        writes: &[MemberWrite],
    ) -> Result<(), StoreError> {
        let mut by_bucket: HashMap<(&str, i32), Vec<&MemberWrite>> = HashMap::new();
        for w in writes {
            by_bucket
                .entry((w.group.as_str(), member_bucket(&w.user)))
                .or_default()
                .push(w);
        }
        let mut work: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        for ((group, bucket), mut changes) in by_bucket {
            // Stable: equal versions (one record's changes) keep their order.
            changes.sort_by_key(|c| c.version);
            work.push(Box::pin(self.apply(session, group, bucket, changes)));
        }
        super::scylla::bounded(work).await?;
        Ok(())
    }

    pub(crate) async fn member(
        &self,
        session: &Session,
        group: &str,
        user: &str,
    ) -> Result<Option<u64>, StoreError> {
        let (set, _) = self.bucket(session, group, member_bucket(user)).await?;
        set.get(user).map(|m| unsigned(*m)).transpose()
    }

    /// Every member: one read of at most `MEMBER_BUCKETS` rows.
    pub(crate) async fn members(
        &self,
        session: &Session,
        group: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let r = session
            .execute_unpaged(&self.get_all, (group,))
            .await
            .map_err(unavailable)?;
        let rows = r.into_rows_result().map_err(corrupt)?;
        let mut out = Vec::new();
        for row in rows.rows::<(Option<Set>,)>().map_err(corrupt)? {
            for (u, m) in row.map_err(corrupt)?.0.unwrap_or_default() {
                out.push((u, unsigned(m)?));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Every group with at least one member (a paged full scan, for recovery tools).
pub(crate) async fn groups(session: &Session, ks: &str) -> Result<Vec<String>, StoreError> {
    let cql = format!("SELECT group_id, members FROM {ks}.group_member_sets");
    let pager = session.query_iter(cql, ()).await.map_err(unavailable)?;
    let rows: Vec<(String, Option<Set>)> = pager
        .rows_stream()
        .map_err(corrupt)?
        .try_collect()
        .await
        .map_err(unavailable)?;
    let mut out: Vec<String> = rows
        .into_iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| !s.is_empty()))
        .map(|(g, _)| g)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Carries the rows of the old `group_members` table into `group_member_sets` (see
/// the top of this file); returns the buckets written. Idempotent: a bucket already
/// present is left alone, so running it again writes nothing.
pub(crate) async fn carry_forward(session: &Session, ks: &str) -> Result<usize, StoreError> {
    let old = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'group_members'",
            (ks,),
        )
        .await
        .map_err(unavailable)?;
    if old.into_rows_result().map_err(corrupt)?.rows_num() == 0 {
        return Ok(0);
    }
    let st = MemberStatements::prepare(session, ks).await?;
    let cql =
        format!("SELECT group_id, user_id, min_seq, WRITETIME(min_seq) FROM {ks}.group_members");
    let mut rows = session
        .query_iter(cql, ())
        .await
        .map_err(unavailable)?
        .rows_stream::<(String, String, Option<i64>, Option<i64>)>()
        .map_err(corrupt)?;
    // A partition's rows come together: one group's buckets are built at a time.
    let mut group: Option<String> = None;
    let mut buckets: BTreeMap<i32, (Set, i64)> = BTreeMap::new();
    let mut written = 0;
    while let Some((g, user, min, at)) = rows.try_next().await.map_err(unavailable)? {
        if group.as_deref() != Some(g.as_str()) {
            if let Some(done) = group.take() {
                written += carry_group(session, &st, &done, std::mem::take(&mut buckets)).await?;
            }
            group = Some(g);
        }
        let (set, newest) = buckets
            .entry(member_bucket(&user))
            .or_insert_with(|| (Set::new(), i64::MIN));
        set.insert(user, min.unwrap_or(0));
        *newest = (*newest).max(at.unwrap_or(0));
    }
    if let Some(done) = group {
        written += carry_group(session, &st, &done, buckets).await?;
    }
    Ok(written)
}

async fn carry_group(
    session: &Session,
    st: &MemberStatements,
    group: &str,
    buckets: BTreeMap<i32, (Set, i64)>,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for (bucket, (set, at)) in buckets {
        if st.bucket(session, group, bucket).await?.1.is_some() {
            continue;
        }
        session
            .execute_unpaged(&st.put_bucket, (at, &set, group, bucket))
            .await
            .map_err(unavailable)?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Fixed values: a change of the hash would re-home every stored member.
        assert_eq!(member_bucket(""), (0xcbf2_9ce4_8422_2325u64 % 64) as i32);
        let mut seen = [0u32; MEMBER_BUCKETS as usize];
        for i in 0..6400 {
            seen[member_bucket(&format!("user{i}")) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
    }
}
