//! Consumer lag and delay-tier backlog as metrics: per partition, the log's end minus
//! the group's committed offset, sampled at an interval by the pods that consume.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::msglog::{LogError, MsgLog, Topics};

/// Where a group stands on one partition.
pub(crate) struct PartitionLag {
    pub(crate) partition: i32,
    pub(crate) committed: Option<i64>,
    pub(crate) low: i64,
    pub(crate) end: i64,
    /// Records not yet processed; with nothing committed the group starts at `low`.
    pub(crate) lag: i64,
}

/// Records remaining for `group` on `topic`, per partition.
pub(crate) async fn lag(
    log: &dyn MsgLog,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>, LogError> {
    let ends = log.watermarks(topic).await?;
    let committed = log.committed(group, topic).await?;
    Ok(ends
        .iter()
        .map(|w| {
            let c = committed
                .iter()
                .find(|(p, _)| *p == w.partition)
                .and_then(|(_, o)| *o);
            let lag = (w.high - c.unwrap_or(w.low).max(w.low)).max(0);
            PartitionLag {
                partition: w.partition,
                committed: c,
                low: w.low,
                end: w.high,
                lag,
            }
        })
        .collect())
}

pub(crate) struct LagRole {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) topics: Topics,
    pub(crate) tiers: Vec<u64>,
    pub(crate) every: Duration,
}

impl LagRole {
    pub(crate) async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.every) => {}
            }
            if let Err(e) = self.sample().await {
                tracing::debug!(error = %e, "lag sample failed");
            }
        }
    }

    async fn sample(&self) -> Result<(), LogError> {
        let mut watched = vec![("sequencer", self.topics.inbound(), None)];
        watched.extend(
            self.tiers
                .iter()
                .map(|t| ("delay", self.topics.delay(*t), Some(*t))),
        );
        for (role, topic, tier) in watched {
            let group = self.topics.group(role);
            let per_partition = lag(self.log.as_ref(), &group, &topic).await?;
            for p in &per_partition {
                metrics::gauge!("ferry_consumer_lag", "group" => group.clone(), "topic" => topic.clone(), "partition" => p.partition.to_string()).set(p.lag as f64);
            }
            if let Some(t) = tier {
                let total: i64 = per_partition.iter().map(|p| p.lag).sum();
                metrics::gauge!("ferry_delay_backlog", "tier" => format!("{t}s")).set(total as f64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msglog::embedded::EmbeddedLog;
    use crate::msglog::{Outgoing, Retention, TopicSpec};

    #[tokio::test]
    async fn lag_is_the_end_minus_the_committed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        log.ensure_topic(&TopicSpec {
            name: "t".into(),
            retention: Retention::Full,
        })
        .await
        .unwrap();
        let recs = (0..5).map(|i| Outgoing::new("t", "k", vec![i])).collect();
        log.append(recs).await.unwrap();
        assert_eq!(
            lag(&log, "g", "t").await.unwrap()[0].lag,
            5,
            "nothing committed: all of it"
        );
        let mut sub = log.subscribe("g", &["t".into()]).await.unwrap();
        let first = sub.next().await.unwrap();
        let second = sub.next().await.unwrap();
        sub.commit(&first).unwrap();
        sub.commit(&second).unwrap();
        sub.flush_commits().await.unwrap();
        let l = &lag(&log, "g", "t").await.unwrap()[0];
        assert_eq!((l.committed, l.end, l.lag), (Some(2), 5, 3));
    }
}
