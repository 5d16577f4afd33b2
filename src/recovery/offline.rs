//! `ferry offline tail`: prints offline hand-off events as JSON lines, for an
//! operator. Reads outside any consumer group: nothing is committed, the forwarder's
//! position never moves.

use std::time::Duration;

use anyhow::Context as _;

use super::time;
use crate::msglog::{MsgLog, Topics};
use crate::pipeline::handoff;

/// Without --follow, a read that delivers nothing for this long while records
/// remain has stalled.
const STALL: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub(crate) enum OfflineCommand {
    /// Print the events of the offline topic as JSON lines (one per event, with its
    /// idempotencyKey, partition and offset), up to its end now, or on with --follow.
    Tail {
        /// beginning | end | a time (RFC 3339 or epoch ms): events from then on.
        #[arg(long, default_value = "beginning")]
        from: String,
        /// Keep printing new events until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
}

pub(crate) async fn tail(
    log: &dyn MsgLog,
    topics: &Topics,
    from: &str,
    follow: bool,
) -> anyhow::Result<()> {
    let topic = topics.offline();
    let marks = log
        .watermarks(&topic)
        .await
        .with_context(|| format!("reading {topic} (has ferry run with this configuration?)"))?;
    let starts: Vec<(i32, i64)> = match from {
        "beginning" => marks.iter().map(|m| (m.partition, m.low)).collect(),
        "end" => marks.iter().map(|m| (m.partition, m.high)).collect(),
        t => {
            let ms = time::parse_instant(t).context("--from: beginning, end or a time")?;
            log.offsets_for_time(&topic, ms).await?
        }
    };
    // Without --follow: where each partition ends now.
    let mut open: Vec<(i32, i64)> = marks
        .iter()
        .filter_map(|m| {
            let at = starts.iter().find(|(p, _)| *p == m.partition)?.1;
            (at < m.high).then_some((m.partition, m.high))
        })
        .collect();
    if !follow && open.is_empty() {
        return Ok(());
    }
    let mut sub = log.read_from(&topic, &starts).await?;
    let out = std::io::stdout();
    loop {
        let rec = if follow {
            sub.next().await?
        } else {
            match tokio::time::timeout(STALL, sub.next()).await {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("reading {topic} stalled for {STALL:?} before its end"),
            }
        };
        if let Some(e) = handoff::decode(&rec) {
            let mut line = handoff::json(&e);
            line["partition"] = rec.partition.into();
            line["offset"] = rec.offset.into();
            use std::io::Write as _;
            writeln!(out.lock(), "{line}")?;
        }
        if !follow {
            open.retain(|(p, high)| !(*p == rec.partition && rec.offset + 1 >= *high));
            if open.is_empty() {
                return Ok(());
            }
        }
    }
}
