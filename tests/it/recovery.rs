//! Recovery: `ferry replay` rebuilds the store from the inbound topic, exactly
//! (same checksum: every message, seq row and member), idempotently, and from a
//! point in time after partial damage; the dry run predicts what --execute does.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use prost::Message as _;
use serde_json::json;

use crate::proto::pb;
use crate::support::*;

/// One conversation of the workload.
struct Conv {
    id: String,
    sender: String,
    /// Stored messages (seqs) it should end with.
    expected: u64,
}

struct Workload {
    convs: Vec<Conv>,
    /// (group, members) of the group conversations.
    groups: Vec<(String, Vec<String>)>,
}

impl Workload {
    fn new(n_convs: usize) -> Self {
        let mut convs = Vec::new();
        let mut groups = Vec::new();
        for i in 0..n_convs {
            if i % 5 == 0 {
                let g = unique("g");
                let members: Vec<String> = (0..3).map(|_| unique("m")).collect();
                convs.push(Conv {
                    id: format!("group:{g}"),
                    sender: members[0].clone(),
                    expected: 0,
                });
                groups.push((g, members));
            } else {
                let (a, b) = (unique("a"), unique("b"));
                let (x, y) = if a < b { (&a, &b) } else { (&b, &a) };
                convs.push(Conv {
                    id: format!("single:{x}-{y}"),
                    sender: a.clone(),
                    expected: 0,
                });
            }
        }
        Self { convs, groups }
    }

    async fn members(&self, f: &Ferry) {
        join_all(self.groups.iter().map(|(g, ms)| async move {
            for m in ms {
                f.add_member(g, m).await;
            }
        }))
        .await;
    }

    /// Rounds `rounds` of the workload: per conversation one batch of new messages,
    /// with retries, edits and transient messages mixed in; plus a few delayed
    /// batches, system messages, membership changes and notices.
    async fn rounds(&mut self, f: &Ferry, rounds: std::ops::Range<u32>) {
        for r in rounds {
            let calls = self.convs.iter_mut().enumerate().map(|(i, c)| {
                let mut msgs = vec![api_msg(i, r, 0, "hello"), api_msg(i, r, 1, "world")];
                c.expected += 2;
                if r % 3 == 1 {
                    msgs.push(api_msg(i, r, 2, "third"));
                    c.expected += 1;
                }
                if r % 4 == 3 {
                    // A retry: same clientMsgId, same content: no new seq.
                    msgs.push(api_msg(i, r - 1, 0, "hello"));
                }
                if r % 5 == 4 || r == 12 {
                    // An edit: same clientMsgId, new content: a new seq and the
                    // original rewritten.
                    msgs.push(api_msg(i, r - 1, 1, "edited"));
                    c.expected += 1;
                }
                if r % 6 == 2 {
                    msgs.push(json!({"contentType": 113, "content": "typing", "store": false}));
                }
                let delayed = (i % 10 == 3 && r == 2).then(|| {
                    c.expected += 1;
                    json!({"senderId": c.sender, "convId": c.id, "deliverAfter": 1,
                           "messages": [api_msg(i, r, 9, "delayed")]})
                });
                let system = (c.id.starts_with("group:") && r == 1).then(|| {
                    c.expected += 1;
                    json!({"convId": c.id, "messages": [{"contentType": 1400, "content": "system tip"}]})
                });
                let body = json!({"senderId": c.sender, "convId": c.id, "messages": msgs});
                async move {
                    for b in std::iter::once(body).chain(delayed).chain(system) {
                        let (s, resp) = f.api(reqwest::Method::POST, "/messages", Some(b)).await;
                        assert_eq!(s, 200, "{resp}");
                    }
                }
            });
            join_all(calls).await;
            if r == 5 {
                // Membership churn: removed, then back with the default min_seq.
                for (g, ms) in &self.groups {
                    let (s, b) = f
                        .api(
                            reqwest::Method::DELETE,
                            &format!("/groups/{g}/members/{}", ms[2]),
                            None,
                        )
                        .await;
                    assert_eq!(s, 204, "{b}");
                }
            }
            if r == 7 {
                for (g, ms) in &self.groups {
                    f.add_member(g, &ms[2]).await;
                }
                let users: Vec<&str> = self.convs.iter().map(|c| c.sender.as_str()).collect();
                let body = json!({"userIds": users,
                    "notice": {"convId": "notice:Sys", "noticeId": format!("n{r}"), "title": "hi"}});
                let (s, b) = f.api(reqwest::Method::POST, "/notices", Some(body)).await;
                assert_eq!(s, 200, "{b}");
            }
        }
    }

    fn total(&self) -> u64 {
        self.convs.iter().map(|c| c.expected).sum()
    }

    /// Waits until every conversation has all its seqs (checked over WebSocket).
    async fn sequenced(&self, f: &Ferry) {
        let mut clients: HashMap<String, Client> = HashMap::new();
        for c in &self.convs {
            if !clients.contains_key(&c.sender) {
                clients.insert(c.sender.clone(), f.connect(&c.sender).await);
            }
            let cl = clients.get_mut(&c.sender).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
            loop {
                let got: u64 = cl.conv_seq(&c.id).await.max_seq.parse().unwrap_or(0);
                if got == c.expected {
                    break;
                }
                assert!(got < c.expected, "{}: max_seq {got} > {}", c.id, c.expected);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{}: max_seq {got} of {}",
                    c.id,
                    c.expected
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn api_msg(conv: usize, round: u32, k: u32, content: &str) -> serde_json::Value {
    json!({"clientMsgId": format!("c{conv}-{round}-{k}"), "contentType": 101, "content": format!("{content} {conv}/{round}/{k}")})
}

/// The `result:` line of a replay as numbers.
fn result(out: &str) -> BTreeMap<String, u64> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn counts(r: &BTreeMap<String, u64>, keys: &[&str]) -> Vec<u64> {
    keys.iter().map(|k| r[*k]).collect()
}

/// Per-conversation checksum lines and the total line.
fn checksum(c: &Cluster) -> (Vec<String>, String) {
    let out = c.admin(&["store", "checksum", "--per-conv"]);
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let total = lines.pop().unwrap();
    assert!(total.starts_with("total "), "{out}");
    (lines, total)
}

fn assert_same_store(before: &(Vec<String>, String), after: &(Vec<String>, String)) {
    if before != after {
        let diff: Vec<_> = before
            .0
            .iter()
            .filter(|l| !after.0.contains(l))
            .map(|l| {
                let conv = l.split_whitespace().nth(1).unwrap_or("");
                let now = after
                    .0
                    .iter()
                    .find(|a| a.split_whitespace().nth(1) == Some(conv));
                format!("before: {l}\n after: {now:?}")
            })
            .collect();
        panic!(
            "store differs after replay:\n{}\n{}\n{}",
            diff.join("\n"),
            before.1,
            after.1
        );
    }
}

/// The sequencer group's committed offsets, from `topics lag`.
fn sequencer_offsets(c: &Cluster) -> Vec<String> {
    c.admin(&["topics", "lag"])
        .lines()
        .skip_while(|l| !l.contains("(sequencer)"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::to_owned)
        .collect()
}

fn keyspace(c: &Cluster) -> String {
    let cfg: toml::Table = toml::from_str(&c.admin(&["config"])).unwrap();
    cfg["scylla"]["keyspace"].as_str().unwrap().to_owned()
}

async fn cql() -> scylla::client::session::Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(cql_addr())
        .build()
        .await
        .unwrap()
}

/// Deletes `n_delete` and corrupts `n_corrupt` messages stamped at or after `t`
/// in `convs`, and lowers one of their seq rows; returns (deleted, corrupted).
/// Each damaging write is stamped just after the write it damages (as a faulty
/// writer racing ferry would): ferry's cells carry log versions that a wall-clock
/// write never reaches.
async fn damage(
    ks: &str,
    convs: &[String],
    t: i64,
    n_delete: usize,
    n_corrupt: usize,
) -> (u64, u64) {
    let s = cql().await;
    type Row = (String, i64, i64, i64, Vec<u8>, i64);
    let mut rows: Vec<Row> = Vec::new();
    for conv in convs {
        let r = s
            .query_unpaged(
                format!("SELECT conv_id, bucket, seq, server_time_ms, body, WRITETIME(body) FROM {ks}.messages WHERE conv_id = ? AND bucket = 0"),
                (conv,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        for row in r.rows::<Row>().unwrap() {
            let row = row.unwrap();
            if row.3 >= t {
                rows.push(row);
            }
        }
    }
    assert!(
        rows.len() >= n_delete + n_corrupt,
        "only {} messages after T",
        rows.len()
    );
    for (conv, bucket, seq, _, _, at) in rows.iter().take(n_delete) {
        s.query_unpaged(
            format!("DELETE FROM {ks}.messages USING TIMESTAMP ? WHERE conv_id = ? AND bucket = ? AND seq = ?"),
            (at + 1, conv, bucket, seq),
        )
        .await
        .unwrap();
    }
    for (conv, bucket, seq, _, body, at) in rows.iter().skip(n_delete).take(n_corrupt) {
        let mut m = pb::MsgData::decode(body.as_slice()).unwrap();
        m.content = b"wrong data from a bad deploy".to_vec().into();
        s.query_unpaged(
            format!(
                "UPDATE {ks}.messages USING TIMESTAMP ? SET body = ? WHERE conv_id = ? AND bucket = ? AND seq = ?"
            ),
            (at + 1, m.encode_to_vec(), conv, bucket, seq),
        )
        .await
        .unwrap();
    }
    let (at,): (i64,) = s
        .query_unpaged(
            format!("SELECT WRITETIME(max_seq) FROM {ks}.conversations WHERE conv_id = ?"),
            (&convs[0],),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    s.query_unpaged(
        format!("UPDATE {ks}.conversations USING TIMESTAMP ? SET max_seq = 3 WHERE conv_id = ?"),
        (at + 1, &convs[0]),
    )
    .await
    .unwrap();
    (n_delete as u64, n_corrupt as u64)
}

const KEYS: [&str; 7] = [
    "written",
    "missing",
    "conflicts",
    "present",
    "rows_set",
    "members_changed",
    "undecodable",
];

/// Kafka + Cassandra: 2000+ messages over 50 conversations; partial damage after
/// time T repaired with --from-time; then the store dropped and rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_store_kafka_cassandra() {
    let c = Cluster::new(Backend::Kafka, "");
    let f = c.start_with("pod-a", &[]);
    let mut w = Workload::new(50);
    w.members(&f).await;
    w.rounds(&f, 0..12).await;
    w.sequenced(&f).await;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    w.rounds(&f, 12..16).await;
    w.sequenced(&f).await;
    assert!(w.total() >= 2000, "{}", w.total());
    let before = checksum(&c);
    assert!(
        before
            .1
            .contains(&format!("messages={} missing=0 groups=10", w.total())),
        "{}",
        before.1
    );
    assert!(f.stop().success());
    let offsets = sequencer_offsets(&c);
    assert!(!offsets.is_empty());

    let ks = keyspace(&c);
    // Partial damage after T in five conversations, repaired from T (the damage is
    // stamped just after the live sequencer's writes; see `damage`).
    let damaged: Vec<String> = w.convs[..5].iter().map(|c| c.id.clone()).collect();
    let (deleted, corrupted) = damage(&ks, &damaged, t, 12, 7).await;
    let t_arg = t.to_string();
    let dry = result(&c.admin(&["replay", "--from-time", &t_arg]));
    assert_eq!(
        counts(
            &dry,
            &[
                "written",
                "missing",
                "conflicts",
                "rows_set",
                "members_changed"
            ]
        ),
        [deleted + corrupted, deleted, corrupted, 1, 0],
        "{dry:?}"
    );
    assert!(
        dry["records"] > dry["window"],
        "records before T only rebuild the state"
    );
    // One conversation alone: only its share of the damage.
    let one = result(&c.admin(&["replay", "--from-time", &t_arg, "--conv", &damaged[0]]));
    assert!(
        one["written"] < dry["written"] && one["rows_set"] == 1,
        "{one:?}"
    );
    let done = result(&c.admin(&["replay", "--from-time", &t_arg, "--execute"]));
    assert_eq!(counts(&done, &KEYS), counts(&dry, &KEYS));
    assert_same_store(&before, &checksum(&c));

    // The store is lost: drop the keyspace, migrate, replay.
    cql()
        .await
        .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
        .await
        .unwrap();
    c.admin(&["migrate"]);
    let dry = result(&c.admin(&["replay"]));
    assert_eq!(
        counts(&dry, &KEYS),
        [w.total(), w.total(), 0, 0, 50, 30, 0],
        "{dry:?}"
    );
    let out = c.admin(&["replay", "--execute"]);
    let done = result(&out);
    assert_eq!(
        counts(&done, &KEYS),
        counts(&dry, &KEYS),
        "dry run predicted execute"
    );
    let rate = done["records"] as f64;
    eprintln!("full replay: {out}");
    assert!(rate > 0.0);
    assert_same_store(&before, &checksum(&c));

    // Idempotent: the second run changes nothing.
    let again = result(&c.admin(&["replay", "--execute"]));
    assert_eq!(
        counts(&again, &KEYS),
        [0, 0, 0, w.total(), 0, 0, 0],
        "{again:?}"
    );
    // Replay read on its own: the live sequencer group did not move.
    assert_eq!(sequencer_offsets(&c), offsets);

    // Explicit offsets: from the end writes nothing.
    let marks = c.admin(&["topics", "describe"]);
    let ends: Vec<String> = marks
        .lines()
        .skip_while(|l| !l.contains("inbound"))
        .skip(1)
        .take_while(|l| l.starts_with("  partition"))
        .map(|l| {
            let p = l.split_whitespace().nth(1).unwrap().trim_end_matches(':');
            let high = l
                .split("high=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            format!("{p}:{high}")
        })
        .collect();
    assert_eq!(ends.len(), 2, "{marks}"); // kafka.partitions in the test config
    let none = result(&c.admin(&["replay", "--from-offsets", &ends.join(",")]));
    assert_eq!(
        (none["window"], none["written"], none["rows_set"]),
        (0, 0, 0)
    );
    assert!(marks.contains("retention.ms=-1"), "{marks}");
}

/// The embedded default: stop ferry, delete store.redb, replay, same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_store_embedded() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start_with("pod-a", &[]);
    let mut w = Workload::new(10);
    w.members(&f).await;
    w.rounds(&f, 0..8).await;
    w.sequenced(&f).await;
    // A running ferry holds the files: replay says to stop it.
    let out = c.ferry(&["replay"], "pod-admin").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("stop it first"),
        "{err}"
    );
    assert!(f.stop().success());

    let before = checksum(&c);
    let offsets = sequencer_offsets(&c);
    std::fs::remove_file(c.dir.path().join("data/store.redb")).unwrap();
    let dry = result(&c.admin(&["replay"]));
    assert_eq!(
        counts(&dry, &KEYS),
        [w.total(), w.total(), 0, 0, 10, 6, 0],
        "{dry:?}"
    );
    let done = result(&c.admin(&["replay", "--execute"]));
    assert_eq!(counts(&done, &KEYS), counts(&dry, &KEYS));
    assert_same_store(&before, &checksum(&c));
    let again = result(&c.admin(&["replay", "--execute"]));
    assert_eq!(
        again["written"] + again["rows_set"] + again["members_changed"],
        0
    );
    assert_eq!(sequencer_offsets(&c), offsets);

    // Group administration works on the embedded log too.
    let plan = c.admin_words("groups reset --group sequencer --to earliest");
    assert!(plan.contains("dry run") && plan.contains("new=0"), "{plan}");
    assert_eq!(sequencer_offsets(&c), offsets);
    c.admin_words("groups reset --group sequencer --to earliest --execute");
    let lag = sequencer_offsets(&c);
    assert!(lag[0].contains("committed=0"), "{lag:?}");

    // A sequencer started from the beginning again re-sequences nothing new.
    let f = c.start_with("pod-a", &[]);
    w.sequenced(&f).await;
    assert!(f.stop().success());
    assert_same_store(&before, &checksum(&c));
}
