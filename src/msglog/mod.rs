//! The durable log ferry is built on: topics of keyed records, consumer groups with
//! committed offsets, compacted topics. Two backends side by side: `kafka` for
//! production, `embedded` for one machine with no external services.

pub(crate) mod embedded;
pub(crate) mod kafka;
pub(crate) mod topics;

use async_trait::async_trait;
use bytes::Bytes;

/// Resolves once enqueued records are durable (`MsgLog::enqueue`).
pub(crate) type Durable =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LogError>> + Send + 'static>>;

pub(crate) use topics::Topics;

/// One record as consumed.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Bytes,
    /// None is a tombstone (compacted topics).
    pub value: Option<Bytes>,
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Bytes)>,
}

impl LogRecord {
    /// An empty record of topic "t" at (partition, offset), for unit tests of what
    /// tracks positions.
    #[cfg(test)]
    pub(crate) fn at(partition: i32, offset: i64) -> Self {
        Self {
            topic: "t".into(),
            partition,
            offset,
            key: Bytes::new(),
            value: None,
            timestamp_ms: 0,
            headers: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// The bytes a record takes against a size limit: key, value and headers.
pub(crate) fn record_bytes(o: &Outgoing) -> usize {
    o.key.len()
        + o.value.as_ref().map_or(0, |v| v.len())
        + o.headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
}

/// One record to append.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl Outgoing {
    pub fn new(topic: impl Into<String>, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            value: Some(value.into()),
            headers: Vec::new(),
        }
    }
    pub fn tombstone(topic: impl Into<String>, key: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            value: None,
            headers: Vec::new(),
        }
    }
}

/// How a topic keeps its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Every record, for replay.
    Full,
    /// Every record and never deleted: the inbound topic, the history `replay`
    /// rebuilds the store from (a deleted prefix would lose the seqs it assigned).
    Forever,
    /// The latest record per key; a tombstone removes the key.
    Compacted,
    /// Short-lived delivery (push topics): nothing worth keeping past a restart.
    Ephemeral,
}

/// The offsets of one partition now: `low` is the first record still kept, `high` the
/// offset the next appended record will get (so `high - low` records are readable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// A topic as the backend knows it (`ferry topics describe`).
#[derive(Clone, Debug)]
pub struct TopicInfo {
    pub partitions: Vec<Watermarks>,
    /// Replicas per partition (1 on the embedded log).
    pub replication: i32,
    /// Settings that differ from the backend's defaults, or that ferry relies on.
    pub configs: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log did not acknowledge within the deadline")]
    Timeout,
    #[error("log unavailable: {0}")]
    Unavailable(String),
    #[error("log closed")]
    Closed,
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The operation is unsafe now (e.g. resetting a group that has live members).
    #[error("{0}")]
    Refused(String),
    /// The log will never accept this record as it is (too large, invalid): retrying
    /// cannot help. A consumer sets the record that produced it aside (dead letter)
    /// rather than stall on it.
    #[error("record rejected: {0}")]
    Rejected(String),
}

impl LogError {
    /// Whether a later retry of the same append may succeed.
    pub(crate) fn can_heal(&self) -> bool {
        !matches!(self, LogError::Rejected(_))
    }
}

/// A backend failure a later retry may get past.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

#[async_trait]
pub trait MsgLog: Send + Sync + 'static {
    /// Appends and returns once the records are durable (acks=all on Kafka),
    /// all of them or an error; records with the same topic and key keep their order.
    async fn append(&self, records: Vec<Outgoing>) -> Result<(), LogError>;

    /// Appends in two steps: the returned call has put the records in line (after
    /// everything enqueued before it on this log, so same topic and key keep the
    /// order of the calls), and the future it gives resolves once they are durable.
    /// A caller can thus have many appends in flight and still keep their order.
    /// The default appends whole before returning (backends with no queue of their
    /// own, where in line means written).
    async fn enqueue(&self, records: Vec<Outgoing>) -> Result<Durable, LogError> {
        let res = self.append(records).await;
        Ok(Box::pin(std::future::ready(res)))
    }

    /// Joins consumer group `group` on `topics`, resuming at its committed offsets
    /// (at the beginning when it has none).
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, LogError>;

    /// Reads `topic` from its beginning and then follows it, outside any group:
    /// how compacted views (notices, presence) are rebuilt on start.
    async fn read_from_start(&self, topic: &str) -> Result<Box<dyn Subscription>, LogError>;

    /// Creates the topic if missing.
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError>;

    /// Deletes a topic (a pod's push topic on graceful stop).
    async fn delete_topic(&self, name: &str) -> Result<(), LogError>;

    /// Whether the backend answers now (readiness).
    async fn ping(&self) -> Result<(), LogError>;

    /// Whether every consumer group this process joined has had its first
    /// assignment (readiness: a pod is not ready while its consumers are joining).
    fn groups_joined(&self) -> bool {
        true
    }
    /// Every partition's offsets now: where a bounded read (replay) stops.
    async fn watermarks(&self, topic: &str) -> Result<Vec<Watermarks>, LogError>;

    /// Per partition, the first offset whose record timestamp is at or after `ts_ms`
    /// (the high watermark when there is none).
    async fn offsets_for_time(&self, topic: &str, ts_ms: i64) -> Result<Vec<(i32, i64)>, LogError>;

    /// Reads `topic` from the given offset of each listed partition (other
    /// partitions are not read) and follows it, outside any group: nothing is ever
    /// committed, no group offset moves.
    async fn read_from(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError>;

    /// `group`'s committed offset (the next record it will read) per partition of
    /// `topic`; None where it has committed nothing.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, Option<i64>)>, LogError>;

    /// Overwrites `group`'s committed offsets on `topic`. Refused while the group has
    /// live members: they would overwrite it again with their own positions.
    async fn set_committed(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), LogError>;

    /// The topic's partitions, replication and settings; None when it does not exist.
    async fn describe(&self, topic: &str) -> Result<Option<TopicInfo>, LogError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next record. Cancel-safe: dropping the future loses nothing.
    async fn next(&mut self) -> Result<LogRecord, LogError>;

    /// Marks `record` processed: the group resumes after it. Call only after its
    /// downstream effects are durable.
    fn commit(&mut self, record: &LogRecord) -> Result<(), LogError>;

    /// Stops delivering records of one partition until `resume`; the consumer keeps
    /// its group membership meanwhile.
    fn pause(&mut self, topic: &str, partition: i32) -> Result<(), LogError>;
    fn resume(&mut self, topic: &str, partition: i32) -> Result<(), LogError>;

    /// Sends the offsets committed so far to the log now, without waiting for the
    /// answer, rather than at the next periodic commit: for a consumer whose records
    /// are calls to another service (the offline forwarder), so that they are
    /// committed while its group is most likely stable, not only at shutdown, when a
    /// member leaving may refuse the commit. The embedded log writes each commit as it
    /// is made.
    fn commit_soon(&mut self) -> Result<(), LogError> {
        Ok(())
    }

    /// Reads one partition again from `offset`: the next records of that partition
    /// `next` returns start there (records of it already fetched are dropped). For a
    /// consumer that must re-apply what it has not committed (the sequencer, after
    /// the store lost its last writes). A partition this subscription no longer
    /// holds is left alone (its next owner reads from the committed offset anyway).
    async fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<(), LogError>;

    /// Writes committed offsets out: the last call made on a subscription, before it
    /// is dropped (Kafka may poll it once more to rejoin its group, dropping records).
    async fn flush_commits(&mut self) -> Result<(), LogError>;
}

/// W3C trace context header carried on every record.
pub const TRACEPARENT: &str = "traceparent";
