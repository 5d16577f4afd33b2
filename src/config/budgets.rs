//! `[budgets]`: what one account may use of a process, over all its sockets there,
//! and the bytes of answers in flight per connection, per account and per process.
//! The per-socket limits (`[limits]`) alone let an account with 20 sockets use 20
//! times a socket's share.

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Budgets {
    /// Bytes of answers (SyncMsgList, GetMsgById, CustomRequest) one connection may
    /// have in flight: being built, or queued for its socket. Reserved at their
    /// worst case before the store is read.
    pub(crate) connection_answer_bytes: usize,
    /// The same over all of one account's sockets on this process.
    pub(crate) account_answer_bytes: usize,
    /// The same over the whole process: what all answers in flight may hold.
    pub(crate) process_answer_bytes: usize,
    /// Longest wait for answer budget before a request is answered RetryError.
    pub(crate) answer_wait_ms: u64,
    /// Partitions (conversation × 1000 seqs, the store's message buckets) one
    /// SyncMsgList may read; a request spanning more is refused before any read.
    pub(crate) max_sync_partitions: usize,
    /// Sustained requests per second of one account, over its sockets here.
    pub(crate) account_requests_per_second: u32,
    /// Burst above that rate.
    pub(crate) account_request_burst: u32,
    /// Requests of one account being handled at once, over its sockets here.
    pub(crate) account_in_flight: usize,
    /// Connects per minute of one account on this process (each publishes presence);
    /// as a burst, refilled evenly over the minute.
    pub(crate) account_connects_per_minute: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            connection_answer_bytes: 8 << 20,
            account_answer_bytes: 12 << 20,
            process_answer_bytes: 128 << 20,
            answer_wait_ms: 2000,
            max_sync_partitions: 200,
            account_requests_per_second: 100,
            account_request_burst: 200,
            account_in_flight: 64,
            account_connects_per_minute: 60,
        }
    }
}

impl Budgets {
    pub(crate) fn validate(
        &self,
        max_response_bytes: usize,
        max_frame_bytes: usize,
        bad: &mut Vec<Invalid>,
    ) {
        for (key, v) in [
            (
                "budgets.connection_answer_bytes",
                self.connection_answer_bytes,
            ),
            ("budgets.account_answer_bytes", self.account_answer_bytes),
            ("budgets.process_answer_bytes", self.process_answer_bytes),
            ("budgets.max_sync_partitions", self.max_sync_partitions),
            (
                "budgets.account_requests_per_second",
                self.account_requests_per_second as usize,
            ),
            ("budgets.account_in_flight", self.account_in_flight),
            (
                "budgets.account_connects_per_minute",
                self.account_connects_per_minute as usize,
            ),
        ] {
            if v == 0 {
                bad.push(invalid(key, "must be greater than 0"));
            }
        }
        // The largest answer and the one piece read past it (`gateway::sync_read`:
        // a message of the largest size, its frame plus 1 KiB of stamps) must fit
        // every level, or such an answer could never be built.
        let need = max_response_bytes
            .saturating_add(max_frame_bytes)
            .saturating_add(1024);
        for (key, v) in [
            (
                "budgets.connection_answer_bytes",
                self.connection_answer_bytes,
            ),
            ("budgets.account_answer_bytes", self.account_answer_bytes),
            ("budgets.process_answer_bytes", self.process_answer_bytes),
        ] {
            if v != 0 && v < need {
                bad.push(invalid(
                    key,
                    format!(
                        "must be at least limits.max_response_bytes + limits.max_frame_bytes + 1024 ({need})"
                    ),
                ));
            }
        }
        if self.account_answer_bytes < self.connection_answer_bytes
            || self.process_answer_bytes < self.account_answer_bytes
        {
            bad.push(invalid(
                "budgets.account_answer_bytes",
                "connection <= account <= process answer bytes",
            ));
        }
    }
}
