//! Offline hand-off: a stored message with options.offlinePush becomes one event on
//! the offline topic per recipient with no online device (never the sender, never a
//! recipient pushed live), also across kill -9 and reprocessing of the inbound
//! topic; the forwarder posts the events to a real HTTP endpoint, retrying through
//! its failures, and commits only what the endpoint accepted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proto::pb;
use crate::support::*;

/// A stored message from `sender` with options.offlinePush set to `offline_push`.
fn push_msg(sender: &str, conv: &str, text: &str, offline_push: bool) -> pb::MsgData {
    let mut m = msg(sender, conv, text);
    m.options.as_mut().unwrap().offline_push = offline_push;
    m.offline_push = Some(pb::msg_data::OfflinePush {
        title: format!("from {sender}"),
        content: text.to_owned(),
        payload: format!("{{\"conv\":\"{conv}\"}}"),
    });
    m
}

fn single(a: &str, b: &str) -> String {
    if a < b {
        format!("single:{a}-{b}")
    } else {
        format!("single:{b}-{a}")
    }
}

/// Every event on the offline topic, through `ferry offline tail` (the embedded log
/// needs its pods stopped first).
fn offline_events(c: &Cluster) -> Vec<serde_json::Value> {
    let out = c.ferry(&["offline", "tail"], "pod-tail").output().unwrap();
    assert!(
        out.status.success(),
        "ferry offline tail failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Idempotency key -> how many events carry it.
fn by_key(events: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for e in events {
        let key = e["idempotencyKey"].as_str().unwrap().to_owned();
        assert_eq!(
            key,
            format!(
                "{}/{}",
                e["userId"].as_str().unwrap(),
                e["serverMsgId"].as_str().unwrap()
            ),
            "the key is (userId, serverMsgId)"
        );
        *keys.entry(key).or_default() += 1;
    }
    keys
}

/// Waits until `client` was pushed a message with every text in `texts`.
async fn pushed(client: &mut Client, texts: &[&str]) {
    let mut want: BTreeSet<String> = texts.iter().map(|t| t.to_string()).collect();
    let deadline = tokio::time::Instant::now() + 20 * SEC;
    while !want.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{}: never pushed {want:?}", client.user);
        for m in client.messages(left).await {
            want.remove(&text(&m));
        }
    }
}

async fn offline_recipients_get_one_event_and_online_ones_none(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo, cy, d) = (unique("a"), unique("b"), unique("c"), unique("d"));
    let g = unique("g");
    for u in [&a, &bo, &cy, &d] {
        f.add_member(&g, u).await;
    }
    let group = format!("group:{g}");
    // ann and bob are online; cy and dan never connect.
    let mut a1 = f.connect(&a).await;
    let mut b1 = f.connect(&bo).await;
    a1.send_msgs(vec![push_msg(&a, &group, "g-push", true)], None)
        .await
        .ok();
    a1.send_msgs(vec![push_msg(&a, &group, "g-quiet", false)], None)
        .await
        .ok();
    let to_cy = single(&a, &cy);
    a1.send_msgs(vec![push_msg(&a, &to_cy, "to-cy", true)], None)
        .await
        .ok();
    let to_bob = single(&a, &bo);
    a1.send_msgs(vec![push_msg(&a, &to_bob, "to-bob", true)], None)
        .await
        .ok();
    // The hand-off is appended before the write, so once routed it is out.
    pushed(&mut b1, &["g-push", "g-quiet", "to-bob"]).await;
    pushed(&mut a1, &["g-push", "g-quiet", "to-cy", "to-bob"]).await;
    drop((a1, b1));
    assert!(f.stop().success());

    let events = offline_events(&c);
    let keys = by_key(&events);
    let expected: BTreeMap<String, usize> = [
        format!("{cy}/{group}-1"),
        format!("{d}/{group}-1"),
        format!("{cy}/{to_cy}-1"),
    ]
    .into_iter()
    .map(|k| (k, 1))
    .collect();
    assert_eq!(
        keys, expected,
        "one event per offline recipient and flagged message; none for the sender, \
         the online bob or the message without offlinePush"
    );
    let e = events
        .iter()
        .find(|e| e["userId"] == cy.as_str() && e["convId"] == to_cy.as_str())
        .unwrap();
    assert_eq!(e["seq"], 1);
    assert_eq!(e["senderId"], a.as_str());
    assert_eq!(e["contentType"], 11);
    assert_eq!(e["title"], format!("from {a}"));
    assert_eq!(e["content"], "to-cy");
    assert_eq!(e["payload"], format!("{{\"conv\":\"{to_cy}\"}}"));
    assert!(e["serverTime"].as_i64().unwrap() > 0);
}
on_both!(offline_recipients_get_one_event_and_online_ones_none);

async fn kill_9_and_redelivery_keep_one_event_per_key(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = single(&a, &bo);
    let mut a1 = f.connect(&a).await;
    let mut acked = 0u64;
    let mut pace = sdk_pace();
    for i in 0..200 {
        pace.tick().await;
        if a1
            .send_msgs(vec![push_msg(&a, &conv, &format!("k{i}"), true)], None)
            .await
            .code
            == 0
        {
            acked += 1;
        }
    }
    // Mid-stream: records applied but not committed are redelivered after restart.
    f.kill9();
    let f = c.start("pod-a");
    let mut a2 = f.connect(&a).await;
    let deadline = std::time::Instant::now() + 60 * SEC;
    let max = loop {
        let m: u64 = a2.conv_seq(&conv).await.max_seq.parse().unwrap();
        if m >= acked {
            let stored = a2.sync(&conv, &(1..=m).collect::<Vec<_>>()).await;
            if stored.iter().all(|x| !x.client_msg_id.is_empty()) {
                break m;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{m} of {acked} acked messages stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(a2);
    // How many redelivered records met their own claim (for the report only: where
    // the kill lands is up to the scheduler).
    let logs = f.logs();
    let redone = logs.matches("already handed off").count()
        + logs
            .lines()
            .filter(|l| l.contains("handed off") && l.contains("redo=true"))
            .count();
    assert!(f.stop().success());

    let events = offline_events(&c);
    let keys = by_key(&events);
    let expected: BTreeSet<String> = (1..=max).map(|s| format!("{bo}/{conv}-{s}")).collect();
    let got: BTreeSet<String> = keys.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "deduplicated by idempotency key: exactly one event per stored message for bob"
    );
    let duplicates = events.len() - keys.len();
    eprintln!(
        "kill -9: {} events for {max} messages ({duplicates} duplicates, same key); \
         {redone} redelivered records met their own claim",
        events.len()
    );
}
on_both!(kill_9_and_redelivery_keep_one_event_per_key);

async fn replay_and_reprocessing_emit_nothing_new(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = single(&a, &bo);
    let mut a1 = f.connect(&a).await;
    for t in ["r1", "r2", "r3"] {
        a1.send_msgs(vec![push_msg(&a, &conv, t, true)], None)
            .await
            .ok();
    }
    pushed(&mut a1, &["r1", "r2", "r3"]).await;
    drop(a1);
    assert!(f.stop().success());
    let before = offline_events(&c);
    assert_eq!(before.len(), 3, "{before:?}");

    // Rebuilding the store from the log hands nothing off again.
    c.admin(&["replay", "--execute"]);
    assert_eq!(offline_events(&c).len(), 3);

    // Every inbound record sequenced again by the live sequencer: the last one finds
    // its own claim on the seq row and its messages stored, so it emits nothing.
    let moved = c.admin_words("groups reset --group sequencer --to earliest --execute");
    eprintln!("{moved}");
    let f = c.start("pod-a");
    let mut a2 = f.connect(&a).await;
    // Same conversation, same lane: sequenced after the reprocessed records.
    a2.send_msgs(vec![push_msg(&a, &conv, "r4", true)], None)
        .await
        .ok();
    pushed(&mut a2, &["r4"]).await;
    assert_eq!(a2.conv_seq(&conv).await.max_seq, "4", "no seq taken twice");
    drop(a2);
    assert!(f.stop().success());
    let events = offline_events(&c);
    let keys = by_key(&events);
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        (1..=4)
            .map(|s| (format!("{bo}/{conv}-{s}"), 1))
            .collect::<Vec<_>>(),
        "reprocessing emitted again: {events:?}"
    );
}
on_both!(replay_and_reprocessing_emit_nothing_new);

/// The push service under test: answers 500 while `failing`, otherwise 200 and
/// keeps the events it accepted.
#[derive(Clone, Default)]
struct Endpoint {
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds between taking a batch and answering it.
    answer_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
    accepted: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Endpoint {
    async fn serve(&self) -> String {
        use axum::routing::post;
        let me = self.clone();
        let app = axum::Router::new().route(
            "/push",
            post(move |body: String| {
                let me = me.clone();
                async move {
                    use std::sync::atomic::Ordering;
                    if me.failing.load(Ordering::SeqCst) {
                        me.refused.fetch_add(1, Ordering::SeqCst);
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    me.accepted
                        .lock()
                        .unwrap()
                        .extend(v["events"].as_array().unwrap().iter().cloned());
                    let delay = me.answer_delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/push")
    }

    fn keys(&self) -> BTreeMap<String, usize> {
        by_key(&self.accepted.lock().unwrap())
    }
}

/// Sum of a counter over the pods of a deployment.
async fn counter(f: &Ferry, name: &str) -> f64 {
    let mut total = 0.0;
    for pod in std::iter::once(f).chain(f.peer.as_deref()) {
        let text = pod.metrics().await;
        total += text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// One pod on both backends: what is checked is that a graceful stop commits what
/// was accepted. With a second pod leaving the forwarder's group at the same moment,
/// Kafka may refuse the last commits while the group rebalances, and the batch is
/// posted again by the next owner: at least once, the same idempotency keys (README,
/// "Offline hand-off").
async fn forwarder_retries_through_failures_and_commits_only_accepted(b: Backend) {
    let ep = Endpoint::default();
    ep.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = ep.serve().await;
    let c = Cluster::new(
        b,
        &format!(
            "[offline.forwarder]\nurl = \"{url}\"\nbatch_wait_ms = 20\nretry_initial_ms = 50\nretry_max_ms = 400\n"
        ),
    );
    let f = c.start_with("pod-a", &[]);
    let (a, bo) = (unique("a"), unique("b"));
    let conv = single(&a, &bo);
    let mut a1 = f.connect(&a).await;
    let send = |i: u64| push_msg(&a, &conv, &format!("f{i}"), true);
    for i in 1..=10 {
        a1.send_msgs(vec![send(i)], None).await.ok();
    }
    // The endpoint fails: the forwarder retries and commits nothing.
    eventually(30 * SEC, || async {
        (ep.refused.load(std::sync::atomic::Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(counter(&f, "ferry_offline_events_failed_total").await > 0.0);
    assert!(ep.accepted.lock().unwrap().is_empty());
    drop(a1);
    assert!(f.stop().success());

    // The endpoint recovers; a new process delivers what was never accepted. It answers
    // late, so the last batch is still waiting for its answer when the pod is stopped
    // below: that batch, taken, is committed too.
    ep.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    ep.answer_delay_ms
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let f = c.start_with("pod-a", &[]);
    let mut a2 = f.connect(&a).await;
    for i in 11..=20 {
        a2.send_msgs(vec![send(i)], None).await.ok();
    }
    let expected: BTreeSet<String> = (1..=20).map(|s| format!("{bo}/{conv}-{s}")).collect();
    eventually(60 * SEC, || async {
        let got: BTreeSet<String> = ep.keys().into_keys().collect();
        (got == expected).then_some(())
    })
    .await;
    // Counted once the answer, 500 ms late, arrives.
    eventually(10 * SEC, || async {
        (counter(&f, "ferry_offline_events_forwarded_total").await >= 1.0).then_some(())
    })
    .await;
    let accepted = ep.accepted.lock().unwrap().len();
    eprintln!(
        "forwarder: {accepted} events accepted for 20 keys after {} refused requests",
        ep.refused.load(std::sync::atomic::Ordering::SeqCst)
    );
    drop(a2);
    assert!(f.stop().success());

    // What was accepted was committed: a restart sends only the new event.
    let f = c.start_with("pod-a", &[]);
    let mut a3 = f.connect(&a).await;
    a3.send_msgs(vec![send(21)], None).await.ok();
    let last = format!("{bo}/{conv}-21");
    eventually(60 * SEC, || async {
        ep.keys().contains_key(&last).then_some(())
    })
    .await;
    // Nothing else is in flight: the event above was the last one appended.
    assert_eq!(
        ep.accepted.lock().unwrap().len(),
        accepted + 1,
        "accepted events were sent again after a restart"
    );
    drop(a3);
    assert!(f.stop().success());
}
on_both!(forwarder_retries_through_failures_and_commits_only_accepted);
