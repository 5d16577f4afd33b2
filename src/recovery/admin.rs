//! `ferry topics create|describe|lag` and `ferry groups reset`: topic and consumer
//! group administration on either log backend, in the spirit of Kafka's
//! kafka-topics.sh and kafka-consumer-groups.sh.

use std::fmt::Write as _;

use crate::msglog::{LogError, MsgLog, Retention, TopicSpec, Topics};

/// ferry's consumer groups (role name) and the topics each reads.
pub(crate) fn ferry_groups(topics: &Topics, tiers: &[u64]) -> Vec<(String, Vec<String>)> {
    vec![
        ("sequencer".to_owned(), vec![topics.inbound()]),
        (
            "delay".to_owned(),
            tiers.iter().map(|t| topics.delay(*t)).collect(),
        ),
        ("offline-forwarder".to_owned(), vec![topics.offline()]),
    ]
}

pub(crate) fn retention_name(r: Retention) -> &'static str {
    match r {
        Retention::Full => "full",
        Retention::Forever => "forever",
        Retention::Compacted => "compacted",
        Retention::Ephemeral => "ephemeral",
    }
}

/// `topics describe`: partitions with their offsets, replication and settings.
pub(crate) async fn describe(log: &dyn MsgLog, specs: &[TopicSpec]) -> Result<String, LogError> {
    let mut o = String::new();
    for spec in specs {
        match log.describe(&spec.name).await? {
            None => {
                let _ = writeln!(
                    o,
                    "{} ({}): missing",
                    spec.name,
                    retention_name(spec.retention)
                );
            }
            Some(info) => {
                let records: i64 = info.partitions.iter().map(|p| p.high - p.low).sum();
                let configs: Vec<String> = info
                    .configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let _ = writeln!(
                    o,
                    "{} ({}): partitions={} replication={} records={} configs: {}",
                    spec.name,
                    retention_name(spec.retention),
                    info.partitions.len(),
                    info.replication,
                    records,
                    if configs.is_empty() {
                        "(defaults)".to_owned()
                    } else {
                        configs.join(" ")
                    }
                );
                for p in &info.partitions {
                    let _ = writeln!(
                        o,
                        "  partition {}: low={} high={} ({} records)",
                        p.partition,
                        p.low,
                        p.high,
                        p.high - p.low
                    );
                }
            }
        }
    }
    Ok(o)
}

/// `topics lag`: per group and partition, the committed offset, the end and the lag.
pub(crate) async fn lag(
    log: &dyn MsgLog,
    groups: &[(String, String, Vec<String>)],
) -> Result<String, LogError> {
    let mut o = String::new();
    for (role, group, topics) in groups {
        let mut total = 0i64;
        let mut body = String::new();
        for t in topics {
            let parts = match crate::pipeline::lag::lag(log, group, t).await {
                Ok(p) => p,
                Err(LogError::UnknownTopic(_)) => {
                    let _ = writeln!(body, "  {t}: missing");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for p in &parts {
                total += p.lag;
                if p.end == p.low && p.committed.is_none() {
                    continue;
                }
                let _ = writeln!(
                    body,
                    "  {t} partition {}: committed={} end={} lag={}",
                    p.partition,
                    p.committed.map_or("-".to_owned(), |c| c.to_string()),
                    p.end,
                    p.lag
                );
            }
        }
        let _ = writeln!(o, "group {group} ({role}): total lag {total}");
        o.push_str(&body);
    }
    Ok(o)
}

/// Where `groups reset --to` moves a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ResetTo {
    Earliest,
    Latest,
    /// The first record at or after this time (epoch ms).
    Time(i64),
    /// This offset on every partition, clamped into the partition's range.
    Offset(i64),
}

/// One partition's move.
#[derive(Clone, Debug)]
pub(crate) struct Move {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) current: Option<i64>,
    pub(crate) new: i64,
}

/// Plans (and with `execute`, applies) moving `group` on `topics`.
pub(crate) async fn reset(
    log: &dyn MsgLog,
    group: &str,
    topics: &[String],
    to: &ResetTo,
    execute: bool,
) -> Result<Vec<Move>, LogError> {
    let mut moves = Vec::new();
    for t in topics {
        let marks = log.watermarks(t).await?;
        let committed = log.committed(group, t).await?;
        let by_time = match to {
            ResetTo::Time(ts) => Some(log.offsets_for_time(t, *ts).await?),
            _ => None,
        };
        for m in &marks {
            let new = match to {
                ResetTo::Earliest => m.low,
                ResetTo::Latest => m.high,
                ResetTo::Offset(o) => (*o).clamp(m.low, m.high),
                ResetTo::Time(_) => by_time
                    .as_ref()
                    .and_then(|v| v.iter().find(|(p, _)| *p == m.partition))
                    .map_or(m.high, |(_, o)| *o),
            };
            moves.push(Move {
                topic: t.clone(),
                partition: m.partition,
                current: committed
                    .iter()
                    .find(|(p, _)| *p == m.partition)
                    .and_then(|(_, c)| *c),
                new,
            });
        }
    }
    if execute {
        for t in topics {
            let offsets: Vec<(i32, i64)> = moves
                .iter()
                .filter(|m| &m.topic == t)
                .map(|m| (m.partition, m.new))
                .collect();
            log.set_committed(group, t, &offsets).await?;
        }
    }
    Ok(moves)
}

pub(crate) fn render_moves(group: &str, moves: &[Move], execute: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "group {group}: {}",
        if execute {
            "offsets reset"
        } else {
            "dry run: nothing changed; add --execute to apply"
        }
    );
    for m in moves {
        let _ = writeln!(
            o,
            "  {} partition {}: current={} new={}",
            m.topic,
            m.partition,
            m.current.map_or("-".to_owned(), |c| c.to_string()),
            m.new
        );
    }
    o
}
