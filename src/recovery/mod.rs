//! Recovery and administration commands: `replay` (rebuild the store from the
//! inbound topic), `topics create|describe|lag`, `groups reset`,
//! `store checksum` and `offline tail`. The operator's guide is the recovery
//! runbook in README.md.

mod admin;
mod checksum;
mod offline;
mod replay;
mod sim;
mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::config::{Config, LogKind, StoreKind};
use crate::domain::{ConvId, now_ms};
use crate::msglog::{MsgLog, Retention, Topics};
use crate::store::Store;

pub(crate) use offline::OfflineCommand;

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    /// Write the effects of records at or after this time (RFC 3339 or epoch ms).
    /// Earlier records are still read: they rebuild the sequencer's state.
    #[arg(long, conflicts_with = "from_offsets")]
    from_time: Option<String>,
    /// Write the effects of records from these inbound offsets on:
    /// `partition:offset,...`. Partitions not listed write nothing.
    #[arg(long)]
    from_offsets: Option<String>,
    /// Only this conversation (repeatable); default: all.
    #[arg(long = "conv")]
    convs: Vec<String>,
    /// Apply the changes. Without it, replay only prints what it would do.
    #[arg(long)]
    execute: bool,
}

#[derive(clap::Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create every topic ferry uses that is missing, with its settings.
    Create {
        /// retention.ms of the inbound topic on Kafka; replay needs all of it (-1: forever).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        inbound_retention_ms: i64,
    },
    /// Print each topic's partitions, offsets, replication and settings.
    Describe,
    /// Print the lag of ferry's consumer groups (sequencer, delay) per partition.
    Lag,
}

#[derive(clap::Subcommand)]
pub(crate) enum GroupsCommand {
    /// Move a consumer group's committed offsets (dry run unless --execute). The
    /// group's processes must be stopped.
    Reset {
        /// A role's group (`sequencer`, `delay`) or a full group name.
        #[arg(long)]
        group: String,
        /// earliest | latest | datetime <RFC 3339 or ms> | duration <PT1H or 1h> | offset <n>
        #[arg(long, num_args = 1..=2, value_names = ["KIND", "VALUE"], required = true)]
        to: Vec<String>,
        /// Only this topic (repeatable); default: the topics the group reads.
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[arg(long)]
        execute: bool,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum StoreCommand {
    /// A digest of the store's content (seq rows, messages, members), to compare
    /// before and after a recovery.
    Checksum {
        /// Only this conversation (repeatable); default: all.
        #[arg(long = "conv")]
        convs: Vec<String>,
        /// Print one line per conversation and group, not only the total.
        #[arg(long)]
        per_conv: bool,
    },
}

/// What to say when the embedded files are locked by a running ferry.
fn embedded_hint(cfg: &Config, what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    let msg = e.to_string();
    if msg.to_ascii_lowercase().contains("already open") {
        anyhow::anyhow!(
            "the embedded {what} in {} is in use by a running ferry: stop it first (the recovery \
             tools on the embedded backend need the data directory to themselves) ({msg})",
            cfg.data_dir.display()
        )
    } else {
        anyhow::anyhow!(
            "opening the embedded {what} in {}: {msg}",
            cfg.data_dir.display()
        )
    }
}

async fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn MsgLog>> {
    match cfg.log.kind {
        LogKind::Embedded => Ok(Arc::new(
            crate::msglog::embedded::EmbeddedLog::open(&cfg.data_dir)
                .map_err(|e| embedded_hint(cfg, "log (log.redb)", e))?,
        )),
        LogKind::Kafka => crate::backends::open_log(cfg).await,
    }
}

async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match cfg.store.kind {
        StoreKind::Embedded => Ok(Arc::new(
            crate::store::embedded::EmbeddedStore::open(&cfg.data_dir)
                .map_err(|e| embedded_hint(cfg, "store (store.redb)", e))?,
        )),
        StoreKind::Scylla => crate::backends::open_store(cfg)
            .await
            .context("opening the store (has `ferry migrate` run?)"),
    }
}

fn conv_set(convs: &[String]) -> anyhow::Result<Option<BTreeSet<String>>> {
    if convs.is_empty() {
        return Ok(None);
    }
    convs
        .iter()
        .map(|c| Ok(ConvId::parse(c)?.to_string()))
        .collect::<anyhow::Result<_>>()
        .map(Some)
}

fn parse_offsets(s: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (part, off) = p
                .trim()
                .split_once(':')
                .with_context(|| format!("--from-offsets: {p:?} is not partition:offset"))?;
            Ok((
                part.parse()
                    .with_context(|| format!("partition {part:?}"))?,
                off.parse().with_context(|| format!("offset {off:?}"))?,
            ))
        })
        .collect()
}

pub(crate) async fn replay(args: ReplayArgs, cfg: &Config) -> anyhow::Result<()> {
    let start = match (&args.from_time, &args.from_offsets) {
        (Some(t), _) => replay::Start::Time(time::parse_instant(t)?),
        (None, Some(o)) => replay::Start::Offsets(parse_offsets(o)?),
        (None, None) => replay::Start::Beginning,
    };
    let opts = replay::Options {
        start,
        convs: conv_set(&args.convs)?,
        execute: args.execute,
        progress: true,
    };
    let log = open_log(cfg).await?;
    let store = open_store(cfg).await?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    let report = replay::replay(log.as_ref(), store.as_ref(), &topics.inbound(), &opts).await?;
    print!("{}", report.render());
    Ok(())
}

pub(crate) async fn topics(cmd: TopicsCommand, cfg: &Config) -> anyhow::Result<()> {
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    // Push topics belong to their pods, which create and delete them.
    let specs: Vec<_> = crate::backends::topic_specs(cfg, &topics)
        .into_iter()
        .filter(|s| s.retention != Retention::Ephemeral)
        .collect();
    match cmd {
        TopicsCommand::Create {
            inbound_retention_ms,
        } => {
            if cfg.log.kind == LogKind::Kafka {
                let kafka =
                    crate::msglog::kafka::KafkaLog::connect(&crate::backends::kafka_settings(cfg))?;
                for spec in &specs {
                    let overrides = if spec.name == topics.inbound() {
                        vec![("retention.ms".to_owned(), inbound_retention_ms.to_string())]
                    } else {
                        Vec::new()
                    };
                    let created = kafka
                        .create_topic(spec, &overrides)
                        .await
                        .with_context(|| format!("creating {}", spec.name))?;
                    println!(
                        "{} ({}): {}",
                        spec.name,
                        admin::retention_name(spec.retention),
                        if created {
                            "created"
                        } else {
                            "exists (left as is)"
                        }
                    );
                }
            } else {
                let log = open_log(cfg).await?;
                for spec in &specs {
                    log.ensure_topic(spec).await?;
                    println!(
                        "{} ({}): ready",
                        spec.name,
                        admin::retention_name(spec.retention)
                    );
                }
            }
        }
        TopicsCommand::Describe => {
            let log = open_log(cfg).await?;
            print!("{}", admin::describe(log.as_ref(), &specs).await?);
        }
        TopicsCommand::Lag => {
            let log = open_log(cfg).await?;
            let groups: Vec<(String, String, Vec<String>)> =
                admin::ferry_groups(&topics, &cfg.pipeline.delay_tiers_secs)
                    .into_iter()
                    .map(|(role, t)| {
                        let g = topics.group(&role);
                        (role, g, t)
                    })
                    .collect();
            print!("{}", admin::lag(log.as_ref(), &groups).await?);
        }
    }
    Ok(())
}

fn reset_to(to: &[String]) -> anyhow::Result<admin::ResetTo> {
    let value = || {
        to.get(1)
            .with_context(|| format!("--to {} needs a value", to[0]))
    };
    Ok(match to[0].as_str() {
        "earliest" => admin::ResetTo::Earliest,
        "latest" => admin::ResetTo::Latest,
        "datetime" => admin::ResetTo::Time(time::parse_instant(value()?)?),
        "duration" => admin::ResetTo::Time(now_ms() - time::parse_duration(value()?)?),
        "offset" => admin::ResetTo::Offset(value()?.parse().context("--to offset <n>")?),
        other => bail!("--to {other:?}: expected earliest, latest, datetime, duration or offset"),
    })
}

pub(crate) async fn groups(cmd: GroupsCommand, cfg: &Config) -> anyhow::Result<()> {
    let GroupsCommand::Reset {
        group,
        to,
        topics: only,
        execute,
    } = cmd;
    let to = reset_to(&to)?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    let known = admin::ferry_groups(&topics, &cfg.pipeline.delay_tiers_secs);
    let (name, default_topics) = match known.iter().find(|(role, _)| *role == group) {
        Some((role, t)) => (topics.group(role), t.clone()),
        None => match known.iter().find(|(role, _)| topics.group(role) == group) {
            Some((_, t)) => (group.clone(), t.clone()),
            None => (group.clone(), Vec::new()),
        },
    };
    let chosen = if only.is_empty() {
        default_topics
    } else {
        only
    };
    if chosen.is_empty() {
        bail!(
            "group {name} is not one of ferry's (sequencer, delay): name its topics with --topic"
        );
    }
    let log = open_log(cfg).await?;
    let moves = admin::reset(log.as_ref(), &name, &chosen, &to, execute).await?;
    print!("{}", admin::render_moves(&name, &moves, execute));
    Ok(())
}

pub(crate) async fn store(cmd: StoreCommand, cfg: &Config) -> anyhow::Result<()> {
    let StoreCommand::Checksum { convs, per_conv } = cmd;
    let convs = conv_set(&convs)?;
    let store = open_store(cfg).await?;
    let (lines, sum) = checksum::checksum(store.as_ref(), convs.as_ref()).await?;
    if per_conv {
        for l in &lines {
            println!("{}", l.text);
        }
    }
    println!(
        "total conversations={} messages={} missing={} groups={} sha256={}",
        sum.conversations, sum.messages, sum.missing, sum.groups, sum.sha256
    );
    Ok(())
}

pub(crate) async fn offline(cmd: OfflineCommand, cfg: &Config) -> anyhow::Result<()> {
    let log = open_log(cfg).await?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    match cmd {
        OfflineCommand::Tail { from, follow } => {
            offline::tail(log.as_ref(), &topics, &from, follow).await
        }
        OfflineCommand::Dead { from, follow } => {
            offline::dead(log.as_ref(), &topics, &from, follow).await
        }
        OfflineCommand::Redrive { from } => offline::redrive(log.as_ref(), &topics, &from).await,
    }
}
