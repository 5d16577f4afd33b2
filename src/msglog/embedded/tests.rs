//! The embedded log's own tests: read costs, seeks and what survives a reopen.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::msglog::{MsgLog, Outgoing, Retention, TopicSpec};

async fn topic(log: &EmbeddedLog, name: &str) -> String {
    log.ensure_topic(&TopicSpec {
        name: name.to_owned(),
        retention: Retention::Full,
    })
    .await
    .unwrap();
    name.to_owned()
}

/// Appends to one topic neither wake nor cost a read to a reader of another, and
/// the reader still gets its own topic's next record at once.
#[tokio::test]
async fn a_reader_pays_only_for_its_own_topics() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let (quiet, busy) = (topic(&log, "quiet").await, topic(&log, "busy").await);
    let mut sub = log
        .subscribe("g", std::slice::from_ref(&quiet))
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let r = sub.next().await.unwrap();
        (r.offset, r.value)
    });
    // Let the reader reach its wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = log.inner.reads.load(Ordering::Relaxed);
    for i in 0..50u32 {
        log.append(vec![Outgoing::new(busy.clone(), "k", i.to_string())])
            .await
            .unwrap();
    }
    // Appends to the busy topic are durable and done: had they woken the reader,
    // it would have read by now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        log.inner.reads.load(Ordering::Relaxed),
        before,
        "appends to another topic made the reader read"
    );
    assert!(!waiting.is_finished());
    log.append(vec![Outgoing::new(quiet.clone(), "k", "mine")])
        .await
        .unwrap();
    let (offset, value) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the reader was not woken by its own topic")
        .unwrap();
    assert_eq!((offset, value.as_deref()), (0, Some(&b"mine"[..])));
}

/// A seek reads a topic again from the given offset, whatever was already read
/// ahead of it (how the sequencer re-applies what it had not committed).
#[tokio::test]
async fn a_seek_reads_a_topic_again_from_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    let t = topic(&log, "inbound").await;
    for i in 0..5u32 {
        log.append(vec![Outgoing::new(t.clone(), "k", i.to_string())])
            .await
            .unwrap();
    }
    let mut sub = log.subscribe("g", std::slice::from_ref(&t)).await.unwrap();
    // Every record is appended already: `next` does not wait.
    let mut read = Vec::new();
    for _ in 0..3 {
        read.push(sub.next().await.unwrap().offset);
    }
    sub.seek(&t, 0, 1).await.unwrap();
    for _ in 0..4 {
        read.push(sub.next().await.unwrap().offset);
    }
    assert_eq!(read, [0, 1, 2, 1, 2, 3, 4]);
}

/// Opens the log in `dir` again once the previous handle has let go of the file.
async fn reopen(dir: &Path) -> EmbeddedLog {
    // The writer thread lets go of the file once the last handle is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedLog::open(dir) {
            Ok(l) => return l,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

/// Next offsets are not written per commit: after a reopen, a topic goes on from
/// one past its last record, a compacted one too (whose earlier records of the
/// same key are gone).
#[tokio::test]
async fn offsets_go_on_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let t = topic(&log, "t").await;
        log.ensure_topic(&TopicSpec {
            name: "c".to_owned(),
            retention: Retention::Compacted,
        })
        .await
        .unwrap();
        for i in 0..3u32 {
            log.append(vec![
                Outgoing::new(t.clone(), "k", i.to_string()),
                Outgoing::new("c", "same", i.to_string()),
            ])
            .await
            .unwrap();
        }
    }
    let log = reopen(dir.path()).await;
    for name in ["t", "c"] {
        let w = log.watermarks(name).await.unwrap()[0];
        assert_eq!(w.high, 3, "{name}: next offset after a reopen");
        log.append(vec![Outgoing::new(name, "same", "after")])
            .await
            .unwrap();
        let mut sub = log.read_from(name, &[(0, 3)]).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.offset, r.value.as_deref()), (3, Some(&b"after"[..])));
    }
    assert_eq!(log.watermarks("c").await.unwrap()[0].low, 3);
}

/// Offsets committed without an fsync of their own (an append's follows them) are
/// where the group resumes after a reopen.
#[tokio::test]
async fn commits_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let t = topic(&log, "t").await;
        for i in 0..3u32 {
            log.append(vec![Outgoing::new(t.clone(), "k", i.to_string())])
                .await
                .unwrap();
        }
        let mut sub = log.subscribe("g", std::slice::from_ref(&t)).await.unwrap();
        let r = sub.next().await.unwrap();
        sub.commit(&r).unwrap();
        log.append(vec![Outgoing::new(t.clone(), "k", "3")])
            .await
            .unwrap();
    }
    // The writer thread lets go of the file once the last handle is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        match EmbeddedLog::open(dir.path()) {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    let mut sub = log.subscribe("g", &["t".to_owned()]).await.unwrap();
    assert_eq!(sub.next().await.unwrap().offset, 1);
}
