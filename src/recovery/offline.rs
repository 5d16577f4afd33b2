//! `ferry offline tail`: prints offline hand-off events as JSON lines, for an
//! operator; `ferry offline dead` the events the forwarder set aside, with why;
//! `ferry offline redrive` hands those to the forwarder again. Reads outside any
//! consumer group: nothing is committed, the forwarder's position never moves.

use std::time::Duration;

use anyhow::Context as _;

use super::time;
use crate::msglog::{LogRecord, MsgLog, Topics};
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
    /// Print the events the forwarder set aside on the offline dead-letter topic (the
    /// push service refused them, or they were too large to post), as JSON lines
    /// with `error` (why) and `origin` (topic/partition/offset).
    Dead {
        #[arg(long, default_value = "beginning")]
        from: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Append the set-aside events (from --from up to the end now) to the offline
    /// topic again, for the forwarder to post (after the push service was fixed);
    /// prints how many. Their idempotency keys are unchanged.
    Redrive {
        #[arg(long, default_value = "beginning")]
        from: String,
    },
}

/// Events redriven per append.
const REDRIVE_CHUNK: usize = 500;

pub(crate) async fn tail(
    log: &dyn MsgLog,
    topics: &Topics,
    from: &str,
    follow: bool,
) -> anyhow::Result<()> {
    read(log, &topics.offline(), from, follow, |rec| {
        print(rec, false)
    })
    .await
}

pub(crate) async fn dead(
    log: &dyn MsgLog,
    topics: &Topics,
    from: &str,
    follow: bool,
) -> anyhow::Result<()> {
    read(log, &topics.offline_dead_letter(), from, follow, |rec| {
        print(rec, true)
    })
    .await
}

pub(crate) async fn redrive(log: &dyn MsgLog, topics: &Topics, from: &str) -> anyhow::Result<()> {
    let mut events = Vec::new();
    read(log, &topics.offline_dead_letter(), from, false, |rec| {
        match handoff::decode(&rec) {
            Some(e) => events.push(handoff::record(topics, &e)),
            None => eprintln!(
                "{}/{}: no event in it (a reference only), not redriven",
                rec.partition, rec.offset
            ),
        }
        Ok(())
    })
    .await?;
    let n = events.len();
    for chunk in events.chunks(REDRIVE_CHUNK) {
        log.append(chunk.to_vec()).await?;
    }
    println!("redriven {n} events to {}", topics.offline());
    Ok(())
}

fn print(rec: LogRecord, dead: bool) -> anyhow::Result<()> {
    let Some(e) = handoff::decode(&rec) else {
        return Ok(());
    };
    let mut line = handoff::json(&e);
    line["partition"] = rec.partition.into();
    line["offset"] = rec.offset.into();
    if dead {
        let text =
            |h: &str| String::from_utf8_lossy(rec.header(h).unwrap_or_default()).into_owned();
        line["error"] = text("ferry-error").into();
        line["origin"] = text("ferry-origin").into();
    }
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Reads `topic` from `from` up to its end now (or on, with `follow`), each record
/// to `each`.
async fn read(
    log: &dyn MsgLog,
    topic: &str,
    from: &str,
    follow: bool,
    mut each: impl FnMut(LogRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let topic = topic.to_owned();
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
    loop {
        let rec = if follow {
            sub.next().await?
        } else {
            match tokio::time::timeout(STALL, sub.next()).await {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("reading {topic} stalled for {STALL:?} before its end"),
            }
        };
        let (partition, offset) = (rec.partition, rec.offset);
        each(rec)?;
        if !follow {
            open.retain(|(p, high)| !(*p == partition && offset + 1 >= *high));
            if open.is_empty() {
                return Ok(());
            }
        }
    }
}
