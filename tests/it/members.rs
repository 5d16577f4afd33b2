//! Group membership on Kafka + Cassandra under churn: a group that many members
//! left reads as cheaply as a fresh one, still gets live pushes, its member list
//! answers, old rows are carried forward by `ferry migrate`, and replay rebuilds
//! the same members.

use std::time::Duration;

use futures_util::StreamExt as _;
use scylla::client::session::Session;
use scylla::statement::Statement;

use crate::support::*;

/// Members added then removed, each once. The old one-row-per-member model kept a
/// tombstone per removal that every read of the group scanned (past 100,000 the
/// read is refused); a few thousand show the growth in a test's time.
const CYCLES: usize = 2_000;

async fn cql() -> Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(cql_addr())
        .build()
        .await
        .unwrap()
}

fn keyspace(c: &Cluster) -> String {
    let cfg: toml::Table = toml::from_str(&c.admin(&["config"])).unwrap();
    cfg["scylla"]["keyspace"].as_str().unwrap().to_owned()
}

/// (live rows, tombstone cells) Cassandra reports reading for `cql` with `group`
/// bound, from the query's trace.
async fn rows_read(s: &Session, cql: &str, group: &str) -> (u64, u64) {
    let mut st = Statement::new(cql);
    st.set_tracing(true);
    let r = s.query_unpaged(st, (group,)).await.unwrap();
    let id = r.tracing_id().expect("a traced query");
    // Trace events are written in the background: poll, bounded.
    for _ in 0..100 {
        // system_traces has two replicas per datacenter: one node answers at ONE.
        let mut q =
            Statement::new("SELECT activity FROM system_traces.events WHERE session_id = ?");
        q.set_consistency(scylla::statement::Consistency::One);
        let ev = s
            .query_unpaged(q, (id,))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let mut found = (0, 0, false);
        for row in ev.rows::<(Option<String>,)>().unwrap() {
            let a = row.unwrap().0.unwrap_or_default();
            // "Read 12 live rows and 3 tombstone cells[ for query …]" (one per replica
            // or range read).
            let words: Vec<&str> = a.split_whitespace().collect();
            if let [
                "Read",
                live,
                "live",
                "rows",
                "and",
                tomb,
                "tombstone",
                "cells",
                ..,
            ] = words[..]
            {
                found.0 += live.parse::<u64>().unwrap();
                found.1 += tomb.parse::<u64>().unwrap();
                found.2 = true;
            }
        }
        if found.2 {
            return (found.0, found.1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = s
        .query_unpaged(
            {
                let mut q = Statement::new(
                    "SELECT activity FROM system_traces.events WHERE session_id = ?",
                );
                q.set_consistency(scylla::statement::Consistency::One);
                q
            },
            (id,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(Option<String>,)>()
        .unwrap()
        .map(|r| r.unwrap().0.unwrap_or_default())
        .collect::<Vec<_>>();
    panic!("no read event in the trace of {cql}: {all:#?}");
}

fn member_names(body: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_many_left_reads_pushes_and_replays_kafka_cassandra() {
    let c = Cluster::new(Backend::Kafka, "");
    let f = c.start("pod-a");
    let g = unique("g");
    let conv = format!("group:{g}");
    let (alice, bob) = (unique("alice"), unique("bob"));
    f.add_member(&g, &alice).await;
    f.add_member(&g, &bob).await;

    // Churn through the server API, as people join and leave: each change is
    // answered once applied; users in parallel, each one's add before its removal.
    stream_iter_cycles(&f, &g).await;

    let (s, body) = f
        .api(reqwest::Method::GET, &format!("/groups/{g}/members"), None)
        .await;
    assert_eq!(s, 200, "{body}");
    let mut want = vec![alice.clone(), bob.clone()];
    want.sort();
    assert_eq!(member_names(&body), want);

    // Live pushes still reach the group.
    let mut a1 = f.connect(&alice).await;
    let mut b1 = f.connect(&bob).await;
    a1.send_text(&conv, "after the churn").await.ok();
    let got = b1.collect_messages(1, 10 * SEC).await;
    assert_eq!(text(&got[0]), "after the churn");

    // What a member list costs Cassandra: at most one live row per bucket, and no
    // tombstones, after CYCLES removals.
    let ks = keyspace(&c);
    let s = cql().await;
    let new_read = format!("SELECT members FROM {ks}.group_member_sets WHERE group_id = ?");
    let (live, tombs) = rows_read(&s, &new_read, &g).await;
    eprintln!("member list after {CYCLES} removals: {live} live rows, {tombs} tombstones read");
    assert!(live <= 64, "{live} rows read for one member list");
    assert_eq!(tombs, 0, "tombstones read for one member list");

    // The same churn in the old model (one row per member, deleted on removal, as
    // ferry wrote it before): its read scans a tombstone per removal.
    let old = unique("old");
    let ins = s
        .prepare(format!(
            "INSERT INTO {ks}.group_members (group_id, user_id, min_seq) VALUES (?, ?, 0)"
        ))
        .await
        .unwrap();
    let del = s
        .prepare(format!(
            "DELETE FROM {ks}.group_members WHERE group_id = ? AND user_id = ?"
        ))
        .await
        .unwrap();
    futures_util::stream::iter(0..CYCLES)
        .for_each_concurrent(32, |i| {
            let (s, ins, del, old) = (&s, &ins, &del, &old);
            async move {
                let u = format!("churn{i}");
                s.execute_unpaged(ins, (old, &u)).await.unwrap();
                s.execute_unpaged(del, (old, &u)).await.unwrap();
            }
        })
        .await;
    let old_read = format!("SELECT user_id, min_seq FROM {ks}.group_members WHERE group_id = ?");
    let (old_live, old_tombs) = rows_read(&s, &old_read, &old).await;
    eprintln!(
        "old model after {CYCLES} removals: {old_live} live rows, {old_tombs} tombstones read"
    );
    assert!(
        old_tombs >= CYCLES as u64,
        "the old model read {old_tombs} tombstones after {CYCLES} removals"
    );

    // Rows of the old table are carried forward by `ferry migrate`.
    let kept = unique("kept");
    for u in ["k1", "k2", "k3"] {
        s.query_unpaged(
            format!("INSERT INTO {ks}.group_members (group_id, user_id, min_seq) VALUES (?, ?, 5)"),
            (&kept, u),
        )
        .await
        .unwrap();
    }
    let out = c.admin(&["migrate"]);
    assert!(out.contains("buckets carried forward"), "{out}");
    let (st, body) = f
        .api(
            reqwest::Method::GET,
            &format!("/groups/{kept}/members"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(member_names(&body), ["k1", "k2", "k3"]);
    assert_eq!(body["members"][0]["minSeq"], 5);
    // Again: nothing more to carry.
    assert!(!c.admin(&["migrate"]).contains("carried forward"));

    // The store is lost: migrate and replay rebuild the same members (the carried
    // group was never in the log, so it is not part of the comparison).
    drop((a1, b1));
    assert!(f.stop().success());
    s.query_unpaged(
        format!("DELETE FROM {ks}.group_member_sets WHERE group_id = ?"),
        (&kept,),
    )
    .await
    .unwrap();
    let before = c.admin(&["store", "checksum"]);
    assert!(before.contains("groups=1"), "{before}");
    s.query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
    c.admin(&["migrate"]);
    c.admin(&["replay", "--execute"]);
    assert_eq!(c.admin(&["store", "checksum"]), before);
}

/// CYCLES add/remove cycles of distinct users in group `g`, 16 users at a time.
async fn stream_iter_cycles(f: &Ferry, g: &str) {
    futures_util::stream::iter(0..CYCLES)
        .for_each_concurrent(16, |i| async move {
            let u = format!("churn{i}");
            f.add_member(g, &u).await;
            let (s, b) = f
                .api(
                    reqwest::Method::DELETE,
                    &format!("/groups/{g}/members/{u}"),
                    None,
                )
                .await;
            assert_eq!(s, 204, "remove member: {b}");
        })
        .await;
}
