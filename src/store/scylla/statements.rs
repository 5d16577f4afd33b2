//! The CQL store's prepared statements, prepared once at connect so the driver
//! routes each request to a replica of its partition.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::store::StoreError;

pub(super) struct Statements {
    pub(super) conv_get: PreparedStatement,
    pub(super) conv_put: PreparedStatement,
    pub(super) msg_put: PreparedStatement,
    pub(super) msg_get: PreparedStatement,
    pub(super) cmid_put: PreparedStatement,
    pub(super) cmid_get: PreparedStatement,
    pub(super) cmid_find: PreparedStatement,
    pub(super) ping: PreparedStatement,
}

/// Prepares `cql`, marked idempotent when it is (the driver may then retry and
/// speculatively execute it); a failure names the statement.
pub(in crate::store) async fn prepared(
    session: &Session,
    cql: String,
    idempotent: bool,
) -> Result<PreparedStatement, StoreError> {
    let mut p = session
        .prepare(cql.as_str())
        .await
        .map_err(|e| StoreError::Unavailable(format!("{e}: {cql}")))?;
    p.set_is_idempotent(idempotent);
    Ok(p)
}

impl Statements {
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        // Every statement is idempotent (versioned upserts and reads): the driver may
        // retry and speculatively execute them.
        let prep = async |cql: String, idempotent: bool| prepared(session, cql, idempotent).await;
        let conv_cols = "max_seq, update_time_ms, claim_partition, claim_offset, claim_first_seq";
        Ok(Self {
            conv_get: prep(format!("SELECT {conv_cols} FROM {ks}.conversations WHERE conv_id = ?"), true).await?,
            conv_put: prep(
                format!("INSERT INTO {ks}.conversations (conv_id, {conv_cols}) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"),
                true,
            )
            .await?,
            msg_put: prep(
                format!(
                    "INSERT INTO {ks}.messages (conv_id, bucket, seq, client_msg_id, sender_id, server_time_ms, body) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
                true,
            )
            .await?,
            msg_get: prep(
                format!("SELECT seq, body, WRITETIME(body) FROM {ks}.messages WHERE conv_id = ? AND bucket = ? AND seq IN ?"),
                true,
            )
            .await?,
            cmid_put: prep(
                format!(
                    "INSERT INTO {ks}.client_msg_ids (client_msg_id, conv_id, sender_id, seq) VALUES (?, ?, ?, ?) \
                     USING TIMESTAMP ?"
                ),
                true,
            )
            .await?,
            cmid_get: prep(
                format!("SELECT seq FROM {ks}.client_msg_ids WHERE client_msg_id = ? AND conv_id = ? AND sender_id = ?"),
                true,
            )
            .await?,
            cmid_find: prep(format!("SELECT conv_id, seq FROM {ks}.client_msg_ids WHERE client_msg_id = ? LIMIT ?"), true).await?,
            ping: prep("SELECT release_version FROM system.local WHERE key = 'local'".to_owned(), true).await?,
        })
    }
}
