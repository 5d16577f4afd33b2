//! The sequencer's guarantee under faults: two sequencer processes under continuous
//! load, kill -9 mid-stream, restarts, rebalances, and the store frozen for seconds.
//! Afterwards every acked message is stored exactly once and every conversation's
//! seqs are exactly 1..N.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::pb;
use crate::support::*;

const SENDERS: usize = 6;
const PEERS: usize = 5;
const LOAD_FOR: Duration = Duration::from_secs(24);

/// Acked clientMsgIds per conversation.
type Acked = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

fn sequencer(c: &Cluster, name: &str) -> Ferry {
    c.start_with(name, &["--role", "sequencer"])
}

fn cassandra_pid() -> String {
    let out = Command::new("pgrep")
        .args(["-f", "org.apache.cassandra.service.CassandraDaemon"])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        !pid.is_empty(),
        "no Cassandra process found (start it with scripts/services/services.sh start cassandra)"
    );
    pid
}

fn signal(pid: &str, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn load(
    gw: String,
    sender: String,
    peers: Vec<String>,
    acked: Acked,
    stop: Instant,
) -> usize {
    let mut client = match connect_url(&format!(
        "{gw}?{}",
        query(&[
            ("token", &token(&sender)),
            ("userId", &sender),
            ("platform", "ios"),
            ("deviceId", "load")
        ])
    ))
    .await
    {
        Connect::Connected(c) => c,
        Connect::Closed(code, r) => panic!("load client refused: {code} {r}"),
    };
    client.user = sender.clone();
    let mut n = 0;
    let mut i = 0usize;
    while Instant::now() < stop {
        let peer = &peers[i % peers.len()];
        let conv = if sender < *peer {
            format!("single:{sender}-{peer}")
        } else {
            format!("single:{peer}-{sender}")
        };
        let batch: Vec<pb::MsgData> = (0..1 + i % 3)
            .map(|k| msg(&sender, &conv, &format!("{sender} {i} {k}")))
            .collect();
        let ids: Vec<String> = batch.iter().map(|m| m.client_msg_id.clone()).collect();
        let r = client.send_msgs(batch, None).await;
        if r.code == 0 {
            n += ids.len();
            acked.lock().unwrap().entry(conv).or_default().extend(ids);
        }
        i += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequencers_killed_rebalanced_and_store_frozen_lose_nothing() {
    let c = Cluster::new(Backend::Kafka, "[log]\nappend_timeout_ms = 3000\n");
    let gw = c.start_with(
        "gw",
        &["--role", "gateway", "--role", "pusher", "--role", "delay"],
    );
    let s1 = sequencer(&c, "seq-1");
    let s2 = sequencer(&c, "seq-2");
    let acked: Acked = Arc::default();
    let stop = Instant::now() + LOAD_FOR;
    let run = unique("r");
    let peers: Vec<String> = (0..PEERS).map(|p| format!("{run}p{p}")).collect();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        tasks.push(tokio::spawn(load(
            gw.ws_url(),
            format!("{run}s{s}"),
            peers.clone(),
            acked.clone(),
            stop,
        )));
    }

    // Chaos while the load runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    s1.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s1b = sequencer(&c, "seq-1");
    tokio::time::sleep(Duration::from_secs(3)).await;
    s2.kill9();
    let s3 = sequencer(&c, "seq-3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cass = cassandra_pid();
    signal(&cass, "-STOP");
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&cass, "-CONT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s4 = sequencer(&c, "seq-4");

    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(
        total > 1000,
        "load too small to mean anything: {total} acked"
    );
    let acked = acked.lock().unwrap().clone();

    // Check every conversation through the protocol, as the sender sees it.
    let mut reader: HashMap<String, Client> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (conv, ids) in &acked {
        let owner = conv
            .trim_start_matches("single:")
            .split('-')
            .find(|u| u.contains(&format!("{run}s")))
            .unwrap()
            .to_owned();
        if !reader.contains_key(&owner) {
            reader.insert(
                owner.clone(),
                gw.connect_device(&owner, "web", "checker").await,
            );
        }
        let cl = reader.get_mut(&owner).unwrap();
        // All acked messages are eventually sequenced and written (more may exist:
        // appends that were durable but answered RetryError). A seq is claimed before
        // its message is written, so a read can briefly see a claimed seq whose write
        // is still being retried: poll until the conversation settles, then judge.
        let (max, stored) = loop {
            let m: u64 = cl.conv_seq(conv).await.max_seq.parse().unwrap();
            let mut stored = Vec::new();
            if m as usize >= ids.len() {
                let seqs: Vec<u64> = (1..=m).collect();
                for chunk in seqs.chunks(1000) {
                    stored.extend(cl.sync(conv, chunk).await);
                }
                let settled = stored
                    .iter()
                    .all(|x| !x.client_msg_id.is_empty() && !x.content.is_empty());
                if settled || Instant::now() >= deadline {
                    break (m, stored);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{conv}: {m} sequenced of {} acked",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let seqs: Vec<u64> = (1..=max).collect();
        let got: Vec<u64> = stored.iter().map(|m| m.seq.parse().unwrap()).collect();
        assert_eq!(got, seqs, "{conv}: seqs are not exactly 1..={max}");
        let gaps: Vec<&str> = stored
            .iter()
            .filter(|m| m.client_msg_id.is_empty() || m.content.is_empty())
            .map(|m| m.seq.as_str())
            .collect();
        if !gaps.is_empty() {
            // What every sequencer did with this conversation, for the post-mortem.
            let mut trail = String::new();
            for entry in std::fs::read_dir(c.dir.path()).unwrap().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    for line in std::fs::read_to_string(entry.path())
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.contains(conv.as_str()))
                    {
                        trail.push_str(&format!(
                            "{}: {line}\n",
                            entry.file_name().to_string_lossy()
                        ));
                    }
                }
            }
            panic!("{conv}: gaps at seqs {gaps:?} in 1..={max}\n{trail}");
        }
        let mut seen = HashSet::new();
        for m in &stored {
            assert!(
                seen.insert(m.client_msg_id.clone()),
                "{conv}: {} stored twice",
                m.client_msg_id
            );
        }
        for id in ids {
            assert!(seen.contains(id), "{conv}: acked message {id} lost");
        }
    }
    eprintln!(
        "fault test: {total} acked messages over {} conversations verified",
        acked.len()
    );
    drop((s1b, s3, s4));
}
