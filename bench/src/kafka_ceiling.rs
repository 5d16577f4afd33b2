//! The ceiling for SendMsgList throughput: a bare rdkafka producer (acks=all,
//! idempotent, ferry's linger and compression) appending records of exactly the shape
//! and size ferry appends for one 1:1 message, keyed by convId, to a fresh topic.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::hist;
use crate::pb::{records, text_msg};

pub struct Ceiling {
    pub records: u64,
    pub errors: u64,
    pub secs: f64,
    pub record_bytes: usize,
    pub ack: hdrhistogram::Histogram<u64>,
}

/// The inbound record ferry writes for one message of `payload` bytes.
fn record(conv: &str, sender: &str, k: u64, payload: usize) -> Vec<u8> {
    let now = crate::conn::now_ns();
    let m = text_msg(
        format!("{now}.0.0.{k}.{k}"),
        sender,
        conv,
        vec![b'x'; payload].into(),
        now / 1_000_000,
    );
    records::InboundRecord {
        kind: Some(records::inbound_record::Kind::Messages(
            records::MessageBatch {
                conv_id: conv.to_owned(),
                sender_id: sender.to_owned(),
                msgs: vec![m],
                accepted_at_ms: (now / 1_000_000) as i64,
                due_at_ms: 0,
            },
        )),
    }
    .encode_to_vec()
}

pub async fn run(
    brokers: &str,
    prefix: &str,
    count: u64,
    convs: u64,
    payload: usize,
    in_flight: usize,
) -> anyhow::Result<Ceiling> {
    let topic = format!("{prefix}ceiling");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 8, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in created {
        if let Err((t, e)) = r {
            anyhow::bail!("creating {t}: {e}");
        }
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "2")
        .set("compression.type", "zstd")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let bar = crate::pool::bar(count, "rdkafka producer");
    let mut ack = hist::new();
    let mut errors = 0;
    let mut pending = FuturesUnordered::new();
    let record_bytes = record("single:s0-r0", "s0", 0, payload).len();
    let t0 = Instant::now();
    let mut done = 0u64;
    for k in 0..count {
        let i = k % convs;
        let conv = format!("single:r{i}-s{i}");
        let value = record(&conv, &format!("s{i}"), k, payload);
        let p = producer.clone();
        let topic = topic.clone();
        pending.push(async move {
            let t = Instant::now();
            let r = p
                .send(
                    FutureRecord::to(&topic)
                        .key(conv.as_bytes())
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await;
            (t.elapsed(), r.is_ok())
        });
        while pending.len() >= in_flight {
            if let Some((d, ok)) = pending.next().await {
                done += 1;
                if ok {
                    hist::record(&mut ack, d.as_micros() as u64);
                } else {
                    errors += 1;
                }
                if done.is_multiple_of(1000) {
                    bar.set_position(done);
                }
            }
        }
    }
    while let Some((d, ok)) = pending.next().await {
        if ok {
            hist::record(&mut ack, d.as_micros() as u64);
        } else {
            errors += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    bar.finish_with_message(format!("{:.0} records/s", count as f64 / secs));
    Ok(Ceiling {
        records: count,
        errors,
        secs,
        record_bytes,
        ack,
    })
}
