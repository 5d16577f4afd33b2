//! The CQL schema and its migration: `schemas/ferry.cql` applied idempotently, the
//! tables that were missing reported, old member rows carried forward.

use std::collections::BTreeSet;

use scylla::client::session::Session;

use super::{ScyllaSettings, corrupt, session};
use crate::store::scylla_members;
use crate::store::{StoreError, unavailable};

/// The schema, with `{keyspace}` and `{replication}` placeholders.
const SCHEMA: &str = include_str!("../../../schemas/ferry.cql");

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    pub keyspace: String,
    /// Statements run (all idempotent).
    pub statements: usize,
    /// The keyspace (if new) and the tables that did not exist before; empty when the
    /// schema was already in place.
    pub created: Vec<String>,
    /// Group member buckets built from the old per-member table (`scylla_members`).
    pub members_carried: usize,
}

/// The schema's statements for one keyspace: placeholders filled in, comments dropped.
fn schema_statements(keyspace: &str, replication: u32) -> Vec<String> {
    let replication =
        format!("{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication}}}");
    let text: String = SCHEMA
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{keyspace}", keyspace)
        .replace("{replication}", &replication);
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The keyspace (as `keyspace`) and its tables, as the schema tables list them now.
async fn existing(session: &Session, ks: &str) -> Result<BTreeSet<String>, StoreError> {
    let mut out = BTreeSet::new();
    let r = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (ks,),
        )
        .await
        .map_err(unavailable)?;
    if r.into_rows_result().map_err(corrupt)?.rows_num() > 0 {
        out.insert(ks.to_owned());
    }
    let r = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (ks,),
        )
        .await
        .map_err(unavailable)?;
    for row in r
        .into_rows_result()
        .map_err(corrupt)?
        .rows::<(String,)>()
        .map_err(corrupt)?
    {
        out.insert(format!("{ks}.{}", row.map_err(corrupt)?.0));
    }
    Ok(out)
}

/// Applies `schemas/ferry.cql` idempotently and waits until every node agrees on
/// the schema. Running it again changes nothing and reports nothing created.
pub async fn migrate(settings: &ScyllaSettings) -> Result<MigrateReport, StoreError> {
    let session = session(settings).await?;
    let ks = &settings.keyspace;
    let before = existing(&session, ks).await?;
    let statements = schema_statements(ks, settings.replication);
    for st in &statements {
        session
            .query_unpaged(st.as_str(), ())
            .await
            .map_err(|e| StoreError::Unavailable(format!("{e}: {st}")))?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(unavailable)?;
    let members_carried = scylla_members::carry_forward(&session, ks).await?;
    let after = existing(&session, ks).await?;
    Ok(MigrateReport {
        keyspace: ks.clone(),
        statements: statements.len(),
        created: after.difference(&before).cloned().collect(),
        members_carried,
    })
}

/// Drops the keyspace: for tests, which each migrate a fresh one.
pub async fn drop_keyspace(settings: &ScyllaSettings) -> Result<(), StoreError> {
    let session = session(settings).await?;
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
        .await
        .map_err(unavailable)?;
    Ok(())
}
