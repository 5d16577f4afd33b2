//! The sequencer's guarantee under faults: sequencer processes under continuous load
//! die or stall at the exact moments that matter, armed through `FERRY_FAULTS`:
//! - killed (SIGKILL) right after claiming seqs, before writing the messages;
//! - killed right after writing the messages, before committing the offset;
//! - stalled while holding a claim, while a new sequencer joins and takes its
//!   partitions (it then writes as a zombie).
//!
//! Each strike is observed (the process exited, the pause was logged), not timed.
//! Afterwards every acked message is stored exactly once and every conversation's
//! seqs are exactly 1..N. (Killing the broker and the database: see matrix.rs.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::pb;
use crate::support::*;

const SENDERS: usize = 6;
const PEERS: usize = 5;
/// The load stops once the chaos is over, and at the latest after this.
const LOAD_AT_MOST: Duration = Duration::from_secs(120);
const SEQ: &[&str] = &["--role", "sequencer"];

/// Acked clientMsgIds per conversation.
type Acked = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Stops the load tasks and checks they got more than `at_least` sends acked;
/// returns how many.
async fn stop_load(
    stop: &AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
    at_least: usize,
) -> usize {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(
        total > at_least,
        "load too small to mean anything: {total} acked"
    );
    total
}

/// A load client of `sender` on the gateway at `gw` (its own device id).
async fn load_client(gw: &str, sender: &str) -> Box<Client> {
    let mut client = match connect_url(&format!(
        "{gw}?{}",
        query(&[
            ("token", &token(sender)),
            ("userId", sender),
            ("platform", "ios"),
            ("deviceId", "load")
        ])
    ))
    .await
    {
        Connect::Connected(c) => c,
        Connect::Closed(code, r) => panic!("load client refused: {code} {r}"),
    };
    client.user = sender.to_owned();
    client
}

async fn load(
    gw: String,
    sender: String,
    peers: Vec<String>,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut client = load_client(&gw, &sender).await;
    let mut n = 0;
    let mut i = 0usize;
    let hard_stop = Instant::now() + LOAD_AT_MOST;
    let mut pace = sdk_pace();
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
        pace.tick().await;
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
        } else {
            refused_backoff().await;
        }
        i += 1;
    }
    n
}

/// `text` without its ANSI colour codes.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ … m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What every sequencer logged about `conv`, for the post-mortem.
fn trail(c: &Cluster, conv: &str) -> String {
    let mut trail = String::new();
    for entry in std::fs::read_dir(c.dir.path()).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            for line in std::fs::read_to_string(entry.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(conv))
            {
                trail.push_str(&format!(
                    "{}: {line}\n",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    trail
}

/// The pod died of SIGKILL at the armed point, not of anything else.
async fn died_at(f: &mut Ferry, point: &str) {
    let status = f.exited(Duration::from_secs(90)).await;
    assert_eq!(
        status.signal(),
        Some(9),
        "{}: expected death by SIGKILL at {point}, got {status}\n{}",
        f.pod,
        f.logs()
    );
    assert_eq!(
        f.log_lines(&["fault point reached", point]),
        1,
        "{}: died, but not at {point}",
        f.pod
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequencers_killed_between_claim_write_and_commit_and_stalled_lose_nothing() {
    let c = Cluster::new(Backend::Kafka, "[log]\nappend_timeout_ms = 3000\n");
    let gw = c.start_with(
        "gw",
        &["--role", "gateway", "--role", "pusher", "--role", "delay"],
    );
    let mut s1 = c.start_env(
        "seq-1",
        SEQ,
        &[("FERRY_FAULTS", "sequencer.claimed=abort@40")],
    );
    let mut s2 = c.start_env(
        "seq-2",
        SEQ,
        &[("FERRY_FAULTS", "sequencer.written=abort@60")],
    );
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let run = unique("r");
    let peers: Vec<String> = (0..PEERS).map(|p| format!("{run}p{p}")).collect();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        tasks.push(tokio::spawn(load(
            gw.ws_url(),
            format!("{run}s{s}"),
            peers.clone(),
            acked.clone(),
            stop.clone(),
        )));
    }

    // 1. seq-1 dies holding a claim it never wrote; its records go to seq-2, which
    //    must find the claim naming them and write the very same seqs.
    died_at(&mut s1, "sequencer.claimed").await;
    let s1b = c.start_env(
        "seq-1b",
        SEQ,
        &[("FERRY_FAULTS", "sequencer.claimed=pause:4000@20")],
    );
    // 2. seq-2 dies after writing, before committing: the records come back and
    //    must not be sequenced a second time.
    died_at(&mut s2, "sequencer.written").await;
    // 3. seq-1b stalls holding a fresh claim; meanwhile seq-3 joins and takes over
    //    partitions, then seq-1b wakes and writes as a zombie.
    s1b.wait_log(
        &["fault point reached", "sequencer.claimed"],
        1,
        Duration::from_secs(90),
    )
    .await;
    let s3 = c.start_with("seq-3", SEQ);
    // Both keep sequencing after the zombie's write.
    s3.wait_log(&["claimed"], 20, Duration::from_secs(60)).await;
    let before = s1b.log_lines(&["claimed"]);
    s1b.wait_log(&["claimed"], before + 20, Duration::from_secs(60))
        .await;
    let total = stop_load(&stop, tasks, 1000).await;

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
            panic!(
                "{conv}: gaps at seqs {gaps:?} in 1..={max}\n{}",
                trail(&c, conv)
            );
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
    drop((s1b, s3));
}

/// Edit chains: each sender resends a few clientMsgIds over and over with new
/// content ("<chain> <n>", n rising), so every send is an edit that rewrites the
/// previous version. Returns (conversation, chain clientMsgId) -> last acked n.
async fn edit_load(
    gw: String,
    sender: String,
    peer: String,
    acked: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut client = load_client(&gw, &sender).await;
    let conv = if sender < peer {
        format!("single:{sender}-{peer}")
    } else {
        format!("single:{peer}-{sender}")
    };
    let chains: Vec<String> = (0..3).map(|c| format!("{sender}-chain{c}")).collect();
    let hard_stop = Instant::now() + LOAD_AT_MOST;
    let mut n = 0;
    let mut i = 0u64;
    let mut pace = sdk_pace();
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
        pace.tick().await;
        let chain = &chains[i as usize % chains.len()];
        let mut m = msg(&sender, &conv, &format!("{chain} {i}"));
        m.client_msg_id = chain.clone();
        if client.send_msgs(vec![m], None).await.code == 0 {
            n += 1;
            acked
                .lock()
                .unwrap()
                .insert((conv.clone(), chain.clone()), i);
        } else {
            refused_backoff().await;
        }
        i += 1;
    }
    n
}

/// A lost update between a zombie and the new owner: seq-1 stalls holding an edit
/// it has sequenced but not written, is frozen (SIGSTOP) until the group evicts it
/// and seq-2 applies the later edits of the same clientMsgIds, then thaws and
/// writes its stale edit. Each edit rewrites the previous version with its content,
/// so in every chain the contents along the seqs must rise strictly up to the last
/// two (the last edit and the version it rewrote); a zombie's late write of an
/// earlier edit over a later one shows as a repeat or a fall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombie_edit_written_late_loses_to_the_new_owners_later_edits() {
    let c = Cluster::new(Backend::Kafka, "[log]\nappend_timeout_ms = 3000\n");
    let gw = c.start_with(
        "gw",
        &["--role", "gateway", "--role", "pusher", "--role", "delay"],
    );
    // Stalls 25 s at its 150th sequenced record: frozen meanwhile, then it writes.
    let s1 = c.start_env(
        "seq-1",
        SEQ,
        &[("FERRY_FAULTS", "sequencer.claimed=pause:25000@150")],
    );
    let acked: Arc<Mutex<BTreeMap<(String, String), u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let run = unique("z");
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        tasks.push(tokio::spawn(edit_load(
            gw.ws_url(),
            format!("{run}s{s}"),
            format!("{run}p{s}"),
            acked.clone(),
            stop.clone(),
        )));
    }
    s1.wait_log(
        &["fault point reached", "sequencer.claimed"],
        1,
        Duration::from_secs(90),
    )
    .await;
    let pid = s1.child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    let s2 = c.start_with("seq-2", SEQ);
    // seq-2 gets seq-1's partitions only once the group evicts the frozen member;
    // it then sequences the edits seq-1 left behind, and later ones.
    s2.wait_log(&["claimed"], 200, Duration::from_secs(90))
        .await;
    signal("-CONT");
    // The stalled task wakes and writes its stale edit as a zombie: the record it
    // held (its offset is in the fault line) is written by seq-1 only now.
    let held = plain(&s1.logs())
        .lines()
        .find(|l| l.contains("fault point reached"))
        .and_then(|l| l.split("offset=").nth(1))
        .and_then(|o| o.split(|c: char| !c.is_ascii_digit()).next())
        .expect("the fault line names the record's offset")
        .to_owned();
    let zombie_wrote = || {
        plain(&s1.logs())
            .lines()
            .any(|l| l.contains("written conv=") && l.contains(&format!(" offset={held} ")))
    };
    let until = Instant::now() + Duration::from_secs(90);
    while !zombie_wrote() {
        assert!(
            Instant::now() < until,
            "seq-1 never wrote its held record {held}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sequencing goes on afterwards (on whichever pod the group gives each partition).
    let claimed = || s1.log_lines(&["claimed"]) + s2.log_lines(&["claimed"]);
    let before = claimed();
    let until = Instant::now() + Duration::from_secs(60);
    while claimed() < before + 50 {
        assert!(
            Instant::now() < until,
            "sequencing stopped after the zombie's write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total = stop_load(&stop, tasks, 500).await;
    let acked = acked.lock().unwrap().clone();

    let mut reader: HashMap<String, Client> = HashMap::new();
    for ((conv, chain), last) in &acked {
        // Each chain gets its own bound: a chain's history is synced in full per poll.
        let deadline = Instant::now() + Duration::from_secs(120);
        let owner = chain.split('-').next().unwrap().to_owned();
        if !reader.contains_key(&owner) {
            reader.insert(
                owner.clone(),
                gw.connect_device(&owner, "web", "checker").await,
            );
        }
        let cl = reader.get_mut(&owner).unwrap();
        // The chain is settled once its last acked edit is stored and a second read
        // finds the same: an edit's rewrite of the version it replaces lands before
        // its new seq's row, so a read in between sees the rewrite with the old
        // max_seq (a state on its way, not a lost update).
        let mut before: Option<(u64, Vec<pb::MsgData>)> = None;
        let (max, stored) = loop {
            let m: u64 = cl.conv_seq(conv).await.max_seq.parse().unwrap();
            let seqs: Vec<u64> = (1..=m).collect();
            let mut stored = Vec::new();
            for chunk in seqs.chunks(1000) {
                stored.extend(cl.sync(conv, chunk).await);
            }
            // A send answered with an error may still have been appended: the chain
            // ends at the last acked edit or a later one.
            let edit =
                |x: &pb::MsgData| text(x).rsplit(' ').next().unwrap().parse::<u64>().unwrap();
            let has_last = stored
                .iter()
                .any(|x| x.client_msg_id == *chain && edit(x) >= *last);
            let snapshot = Some((m, stored.clone()));
            if has_last && before == snapshot {
                break (m, stored);
            }
            before = snapshot;
            if Instant::now() >= deadline {
                let chain_seqs: Vec<(String, String)> = stored
                    .iter()
                    .filter(|x| x.client_msg_id == *chain)
                    .map(|x| (x.seq.clone(), text(x)))
                    .collect();
                panic!(
                    "{conv}: the last acked edit {last} of {chain} never stored; max_seq {m}, chain {:?}\n{}",
                    &chain_seqs[chain_seqs.len().saturating_sub(6)..],
                    trail(&c, conv)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let got: Vec<u64> = stored.iter().map(|m| m.seq.parse().unwrap()).collect();
        assert_eq!(
            got,
            (1..=max).collect::<Vec<u64>>(),
            "{conv}: seqs are not 1..={max}"
        );
        let versions: Vec<u64> = stored
            .iter()
            .filter(|m| m.client_msg_id == *chain)
            .map(|m| text(m).rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .collect();
        let n = versions.len();
        let rising = versions
            .windows(2)
            .take(n.saturating_sub(2))
            .all(|w| w[0] < w[1]);
        let last_two = n < 2 || versions[n - 2] == versions[n - 1];
        assert!(
            rising && last_two && versions[n - 1] >= *last,
            "{conv} {chain}: contents along the seqs {versions:?} (last acked {last}): an update was lost\n{}",
            trail(&c, conv)
        );
    }
    eprintln!(
        "zombie edit test: {total} acked edits over {} chains verified",
        acked.len()
    );
    drop((s1, s2));
}
