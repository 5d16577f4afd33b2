//! The delay tiers' forwarding rate (not a test; BENCHMARKS.md, "Delay tiers"): fills
//! tier 1 with N delayed records that are all due, starts the delay role alone and
//! reports records per second from the first forwarded record reaching the inbound
//! topic to the last (the consumer group's join is not counted).
//!
//!   cargo bench --bench delay_tier -- [--records N] [--kafka]
//!
//! `--kafka` runs against the broker in FERRY_TEST_KAFKA (default 127.0.0.1:9092),
//! on fresh topics; otherwise on an embedded log in a temporary directory.

#![allow(unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::testkit::{
    EmbeddedLog, KafkaLog, KafkaSettings, MsgLog, Retention, TopicSpec, delay_record, delay_role,
    delay_topics, now_ms,
};
use tokio_util::sync::CancellationToken;

const TIERS: [u64; 3] = [1, 5, 10];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let records: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(20_000), |n| n.parse())?;
    let kafka = args.iter().any(|a| a == "--kafka");
    let dir = tempfile::tempdir()?;
    let prefix = format!("dbench{}.", now_ms());
    let log: Arc<dyn MsgLog> = if kafka {
        Arc::new(KafkaLog::connect(&KafkaSettings {
            brokers: std::env::var("FERRY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            topic_prefix: prefix.clone(),
            partitions: 2,
            replication: 1,
            properties: Default::default(),
            append_timeout: Duration::from_secs(30),
            max_message_bytes: 1_000_000,
        })?)
    } else {
        Arc::new(EmbeddedLog::open(dir.path())?)
    };
    let (inbound, tiers) = delay_topics(&prefix, &TIERS);
    for name in tiers.iter().chain([&inbound]) {
        log.ensure_topic(&TopicSpec {
            name: name.clone(),
            retention: Retention::Full,
        })
        .await?;
    }
    // Due a second ago, in 200 conversations (keys spread over the partitions).
    let now = now_ms();
    let all: Vec<_> = (0..records)
        .map(|i| {
            let conv = format!("single:s{}-r{}", i % 200, i % 200);
            delay_record(&prefix, 1, &conv, now - 1000, now - 2000)
        })
        .collect();
    for chunk in all.chunks(1000) {
        log.append(chunk.to_vec()).await?;
    }
    let cancel = CancellationToken::new();
    let role = tokio::spawn(delay_role(
        log.clone(),
        &prefix,
        TIERS.to_vec(),
        cancel.clone(),
    ));
    let mut sub = log.read_from_start(&inbound).await?;
    let mut first = None;
    for _ in 0..records {
        tokio::time::timeout(Duration::from_secs(120), sub.next()).await??;
        first.get_or_insert_with(Instant::now);
    }
    let took = first.expect("records read").elapsed().as_secs_f64();
    cancel.cancel();
    role.await??;
    let backend = if kafka { "kafka" } else { "embedded" };
    println!(
        "| {backend} | {records} | {took:.2} s | {:.0} records/s |",
        (records - 1) as f64 / took.max(1e-9)
    );
    if kafka {
        for t in tiers.iter().chain([&inbound]) {
            log.delete_topic(t).await.ok();
        }
    }
    Ok(())
}
