//! `MsgLog` scenarios, written once against the trait and run on Kafka (a real broker
//! at FERRY_TEST_KAFKA, default 127.0.0.1:9092) and on the embedded log. Each test
//! uses fresh topic and group names.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;

use ferry::testkit::EmbeddedLog;
use ferry::testkit::now_ms;
use ferry::testkit::{KafkaLog, KafkaSettings};
use ferry::testkit::{
    LogRecord, MsgLog, Outgoing, Retention, Subscription, TRACEPARENT, TopicSpec,
};

/// Long enough for a consumer group's first join on a fresh broker.
const WAIT: Duration = Duration::from_secs(30);

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn kafka_settings() -> KafkaSettings {
    KafkaSettings {
        brokers: std::env::var("FERRY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("ferry-test-{}.", suffix()),
        partitions: 3,
        replication: 1,
        properties: BTreeMap::new(),
        append_timeout: Duration::from_secs(10),
        max_message_bytes: 1_000_000,
    }
}

fn kafka() -> KafkaLog {
    KafkaLog::connect(&kafka_settings()).unwrap()
}

async fn next(sub: &mut Box<dyn Subscription>) -> LogRecord {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no record in time")
        .unwrap()
}

async fn topic(log: &dyn MsgLog, retention: Retention) -> String {
    let name = format!("ferry-test-{}", suffix());
    log.ensure_topic(&TopicSpec {
        name: name.clone(),
        retention,
    })
    .await
    .unwrap();
    // Idempotent.
    log.ensure_topic(&TopicSpec {
        name: name.clone(),
        retention,
    })
    .await
    .unwrap();
    name
}

/// A record appended with headers comes back with key, value, headers and timestamp.
async fn round_trip_with_headers(log: &dyn MsgLog) {
    let t = topic(log, Retention::Full).await;
    let before = now_ms();
    let mut o = Outgoing::new(&t, "conv-1", "hello");
    o.headers = vec![
        (TRACEPARENT.into(), Bytes::from_static(b"00-abc-def-01")),
        ("empty".into(), Bytes::new()),
    ];
    log.append(vec![o, Outgoing::new(&t, "conv-1", "again")])
        .await
        .unwrap();
    log.append(Vec::new()).await.unwrap();

    let mut sub = log
        .subscribe(&format!("g-{}", suffix()), std::slice::from_ref(&t))
        .await
        .unwrap();
    let r = next(&mut sub).await;
    assert_eq!(
        (r.topic.as_str(), r.key.as_ref(), r.value.as_deref()),
        (t.as_str(), &b"conv-1"[..], Some(&b"hello"[..]))
    );
    assert_eq!(r.header(TRACEPARENT), Some(&b"00-abc-def-01"[..]));
    assert_eq!(r.header("empty"), Some(&b""[..]));
    assert!(
        r.timestamp_ms >= before - 1000 && r.timestamp_ms <= now_ms() + 1000,
        "timestamp {}",
        r.timestamp_ms
    );
    let r2 = next(&mut sub).await;
    assert_eq!(
        (r2.value.as_deref(), r2.partition),
        (Some(&b"again"[..]), r.partition)
    );
    assert!(r2.offset > r.offset);
    assert!(r2.headers.is_empty());
}

/// A new subscriber of the same group resumes after the last committed record;
/// a delivered but uncommitted record is delivered again.
async fn commit_then_resume(log: &dyn MsgLog) {
    let t = topic(log, Retention::Full).await;
    let group = format!("g-{}", suffix());
    let recs = ["v1", "v2", "v3"]
        .map(|v| Outgoing::new(&t, "k", v))
        .to_vec();
    log.append(recs).await.unwrap();

    let mut sub = log
        .subscribe(&group, std::slice::from_ref(&t))
        .await
        .unwrap();
    let r1 = next(&mut sub).await;
    assert_eq!(r1.value.as_deref(), Some(&b"v1"[..]));
    sub.commit(&r1).unwrap();
    let r2 = next(&mut sub).await;
    assert_eq!(r2.value.as_deref(), Some(&b"v2"[..]));
    // r2 is not committed.
    sub.flush_commits().await.unwrap();
    drop(sub);

    let mut sub = log
        .subscribe(&group, std::slice::from_ref(&t))
        .await
        .unwrap();
    let again = next(&mut sub).await;
    assert_eq!(
        (again.value.as_deref(), again.offset),
        (Some(&b"v2"[..]), r2.offset)
    );
    let r3 = next(&mut sub).await;
    assert_eq!(r3.value.as_deref(), Some(&b"v3"[..]));
    sub.commit(&r3).unwrap();
    sub.flush_commits().await.unwrap();
}

/// A paused partition delivers nothing (not even records already prefetched) until
/// resumed; then delivery continues exactly where it stopped.
/// `alive` is checked while paused (e.g. that the consumer still holds its partitions).
async fn pause_and_resume(log: &dyn MsgLog, alive: &(dyn Fn() -> bool + Sync)) {
    let t = topic(log, Retention::Full).await;
    let recs = ["a1", "a2", "a3"]
        .map(|v| Outgoing::new(&t, "same-key", v))
        .to_vec();
    log.append(recs).await.unwrap();
    let mut sub = log
        .subscribe(&format!("g-{}", suffix()), std::slice::from_ref(&t))
        .await
        .unwrap();
    let r1 = next(&mut sub).await;
    assert_eq!(r1.value.as_deref(), Some(&b"a1"[..]));
    sub.pause(&t, r1.partition).unwrap();
    log.append(vec![Outgoing::new(&t, "same-key", "a4")])
        .await
        .unwrap();

    // a2 and a3 were most likely prefetched already: they must stay undelivered.
    // Repeated short waits also show `next` is cancel-safe.
    for _ in 0..6 {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(
            got.is_err(),
            "paused partition delivered {:?}",
            got.unwrap().map(|r| r.value)
        );
    }
    assert!(alive(), "consumer lost its partitions while paused");

    sub.resume(&t, r1.partition).unwrap();
    for want in ["a2", "a3", "a4"] {
        let r = next(&mut sub).await;
        assert_eq!(r.value.as_deref(), Some(want.as_bytes()));
    }
}

/// `read_from_start` replays a compacted topic: latest value per key, tombstones
/// as `None`; then it follows new records.
async fn read_from_start_sees_values_and_tombstones(log: &dyn MsgLog) {
    let t = topic(log, Retention::Compacted).await;
    log.append(vec![
        Outgoing::new(&t, "k1", "v1"),
        Outgoing::new(&t, "k2", "v2"),
        Outgoing::new(&t, "k1", "v1b"),
        Outgoing::tombstone(&t, "k2"),
        Outgoing::new(&t, "k3", "v3"),
    ])
    .await
    .unwrap();

    let mut sub = log.read_from_start(&t).await.unwrap();
    let mut view: HashMap<Bytes, Option<Bytes>> = HashMap::new();
    // Compaction may or may not have run: fold until the view is the final state.
    let want = |v: &HashMap<Bytes, Option<Bytes>>| {
        v.get(&b"k1"[..]) == Some(&Some(Bytes::from_static(b"v1b")))
            && v.get(&b"k2"[..]) == Some(&None)
            && v.get(&b"k3"[..]) == Some(&Some(Bytes::from_static(b"v3")))
    };
    while !want(&view) {
        let r = next(&mut sub).await;
        sub.commit(&r).unwrap(); // a no-op outside a group
        view.insert(r.key, r.value);
    }

    log.append(vec![Outgoing::new(&t, "k4", "v4")])
        .await
        .unwrap();
    loop {
        let r = next(&mut sub).await;
        if r.key.as_ref() == b"k4" {
            assert_eq!(r.value.as_deref(), Some(&b"v4"[..]));
            break;
        }
    }
}

/// Bounded reads and offsets administration: watermarks, offsets by time, reading
/// from given offsets, a group's committed offsets, describe.
async fn offsets_and_bounded_reads(log: &dyn MsgLog) {
    let t = topic(log, Retention::Forever).await;
    let marks = log.watermarks(&t).await.unwrap();
    assert!(marks.iter().all(|m| m.low == 0 && m.high == 0), "{marks:?}");
    log.append(
        (0..6)
            .map(|i| Outgoing::new(&t, "k", format!("a{i}")))
            .collect(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mid = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.append(
        (0..4)
            .map(|i| Outgoing::new(&t, "k", format!("b{i}")))
            .collect(),
    )
    .await
    .unwrap();
    let marks = log.watermarks(&t).await.unwrap();
    let p = marks
        .iter()
        .find(|m| m.high > 0)
        .expect("one key, one partition");
    assert_eq!((p.low, p.high), (0, 10));
    assert_eq!(marks.iter().map(|m| m.high).sum::<i64>(), 10);

    let at = log.offsets_for_time(&t, mid).await.unwrap();
    assert_eq!(at.iter().find(|(q, _)| *q == p.partition).unwrap().1, 6);
    let at = log.offsets_for_time(&t, 0).await.unwrap();
    assert_eq!(at.iter().find(|(q, _)| *q == p.partition).unwrap().1, 0);
    let at = log.offsets_for_time(&t, now_ms() + 60_000).await.unwrap();
    assert_eq!(at.iter().find(|(q, _)| *q == p.partition).unwrap().1, 10);

    let mut sub = log.read_from(&t, &[(p.partition, 7)]).await.unwrap();
    let r = next(&mut sub).await;
    assert_eq!((r.offset, r.value.as_deref()), (7, Some(&b"b1"[..])));

    let group = format!("g-{}", suffix());
    let none = log.committed(&group, &t).await.unwrap();
    assert!(none.iter().all(|(_, c)| c.is_none()), "{none:?}");
    log.set_committed(&group, &t, &[(p.partition, 4)])
        .await
        .unwrap();
    let got = log.committed(&group, &t).await.unwrap();
    assert_eq!(
        got.iter().find(|(q, _)| *q == p.partition).unwrap().1,
        Some(4)
    );
    // A group member resumes where the offsets were set.
    let mut member = log
        .subscribe(&group, std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(next(&mut member).await.offset, 4);

    let info = log.describe(&t).await.unwrap().expect("exists");
    assert_eq!(info.partitions.len(), marks.len());
    assert!(
        info.configs
            .iter()
            .any(|(k, v)| k == "retention.ms" && v == "-1"),
        "{:?}",
        info.configs
    );
    assert!(
        log.describe(&format!("missing-{}", suffix()))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        log.watermarks(&format!("missing-{}", suffix())).await,
        Err(ferry::testkit::LogError::UnknownTopic(_))
    ));
}

// ---- Kafka ----

#[tokio::test]
async fn kafka_ping_and_topics() {
    let log = kafka();
    log.ping().await.unwrap();
    let t = topic(&log, Retention::Ephemeral).await;
    log.append(vec![Outgoing::new(&t, "u", "push")])
        .await
        .unwrap();
    log.delete_topic(&t).await.unwrap();
    log.delete_topic(&t).await.unwrap();
    // Nothing answers on port 1: ping fails fast instead of hanging.
    let dead = KafkaLog::connect(&KafkaSettings {
        brokers: "127.0.0.1:1".into(),
        ..kafka_settings()
    })
    .unwrap();
    assert!(dead.ping().await.is_err());
}

#[tokio::test]
async fn kafka_append_to_dead_broker_times_out() {
    let log = KafkaLog::connect(&KafkaSettings {
        brokers: "127.0.0.1:1".into(),
        append_timeout: Duration::from_millis(500),
        ..kafka_settings()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = log
        .append(vec![Outgoing::new("nowhere", "k", "v")])
        .await
        .unwrap_err();
    assert!(matches!(err, ferry::testkit::LogError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn kafka_round_trip_with_headers() {
    round_trip_with_headers(&kafka()).await;
}

#[tokio::test]
async fn kafka_commit_then_resume() {
    commit_then_resume(&kafka()).await;
}

#[tokio::test]
async fn kafka_pause_and_resume() {
    let log = kafka();
    let probe = log.clone();
    pause_and_resume(&log, &move || probe.assigned_partitions() > 0).await;
    assert_eq!(
        log.assigned_partitions(),
        0,
        "dropped subscriptions still counted"
    );
}

#[tokio::test]
async fn kafka_offsets_and_bounded_reads() {
    offsets_and_bounded_reads(&kafka()).await;
}

#[tokio::test]
async fn kafka_read_from_start() {
    read_from_start_sees_values_and_tombstones(&kafka()).await;
}

/// A record over the log's limit is `Rejected` (retrying cannot help: the caller sets
/// aside what produced it), and the log takes the next append as ever.
async fn a_record_over_the_limit_is_rejected(log: &dyn MsgLog) {
    let t = topic(log, Retention::Full).await;
    let big: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let err = log
        .append(vec![Outgoing::new(&t, "k", big)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ferry::testkit::LogError::Rejected(m) if m.contains(&t)),
        "{err:?}"
    );
    log.append(vec![Outgoing::new(&t, "k", "small")])
        .await
        .unwrap();
    let mut sub = log
        .subscribe(&format!("g-{}", suffix()), std::slice::from_ref(&t))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.value.as_deref(), Some(&b"small"[..]));
}

#[tokio::test]
async fn kafka_a_record_over_the_limit_is_rejected() {
    let log = KafkaLog::connect(&KafkaSettings {
        max_message_bytes: 65_536,
        ..kafka_settings()
    })
    .unwrap();
    a_record_over_the_limit_is_rejected(&log).await;
}

#[tokio::test]
async fn embedded_a_record_over_the_limit_is_rejected() {
    let (_d, log) = embedded();
    a_record_over_the_limit_is_rejected(&log.with_max_record_bytes(65_536)).await;
}

// ---- the embedded twin, for parity ----

fn embedded() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    (dir, log)
}

#[tokio::test]
async fn embedded_round_trip_with_headers() {
    let (_d, log) = embedded();
    round_trip_with_headers(&log).await;
}

#[tokio::test]
async fn embedded_commit_then_resume() {
    let (_d, log) = embedded();
    commit_then_resume(&log).await;
}

#[tokio::test]
async fn embedded_pause_and_resume() {
    let (_d, log) = embedded();
    pause_and_resume(&log, &|| true).await;
}

#[tokio::test]
async fn embedded_read_from_start() {
    let (_d, log) = embedded();
    read_from_start_sees_values_and_tombstones(&log).await;
}

#[tokio::test]
async fn embedded_offsets_and_bounded_reads() {
    let (_d, log) = embedded();
    offsets_and_bounded_reads(&log).await;
}
