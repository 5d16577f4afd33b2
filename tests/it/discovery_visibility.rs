//! A change is discoverable once the sequencer has applied it, not a durability
//! horizon later: on Kafka + Cassandra the sequencer commits its offsets
//! `scylla.durability_horizon_secs` behind what it applied (so that a database that
//! forgets its last seconds is re-applied from the log), and discovery reads the
//! applied mark instead (docs/conversation-discovery.md, "Cursor semantics").

use std::time::Duration;

use crate::discovery::{discover_all, single};
use crate::proto::pb::discover_convs_resp::Conv;
use crate::support::*;

/// The default `scylla.durability_horizon_secs`, set explicitly so that the bound
/// below follows it.
const HORIZON: Duration = Duration::from_secs(10);
/// A change must be discoverable within half the horizon of its send's answer (the
/// applied mark is written every second, its read reused for 200 ms).
const WELL_BEFORE: Duration = Duration::from_secs(HORIZON.as_secs() / 2);
/// How long the pipeline may take to come up, for the warm-up.
const WITHIN: Duration = Duration::from_secs(30);

/// Asks from `cursor` every 100 ms until `conv` is listed, at most until
/// `deadline`: what was listed, and the cursor after it.
async fn discover_by(
    c: &mut Client,
    mut cursor: String,
    conv: &str,
    deadline: tokio::time::Instant,
    what: &str,
) -> (Vec<Conv>, String) {
    let mut all = Vec::new();
    loop {
        let (got, next) = discover_all(c, cursor, 0).await;
        all.extend(got);
        cursor = next;
        if all.iter().any(|x| x.conv_id == conv) {
            return (all, cursor);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{conv} not discovered {what}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Carol's first message to an offline bob is discoverable by bob well before the
/// durability horizon has passed.
async fn a_first_message_is_discoverable_before_the_horizon(backend: Backend) {
    let c = Cluster::new(
        backend,
        &format!(
            "[scylla]\ndurability_horizon_secs = {}\n",
            HORIZON.as_secs()
        ),
    );
    let f = c.start("pod-a");
    let (bob, carol, dave) = (unique("bob"), unique("carol"), unique("dave"));
    // Warm-up: the pipeline runs end to end (dave's message found by bob).
    let mut d = f.connect(&dave).await;
    d.send_text(&single(&bob, &dave), "hello bob").await.ok();
    let mut b = f.connect(&bob).await;
    let warm = tokio::time::Instant::now() + WITHIN;
    let (_, cursor) = discover_by(&mut b, String::new(), &single(&bob, &dave), warm, "").await;
    drop(b);

    // Bob offline; carol writes to him for the first time.
    let mut cl = f.connect(&carol).await;
    cl.send_text(&single(&bob, &carol), "first words")
        .await
        .ok();
    let sent = tokio::time::Instant::now();

    let mut b = f.connect(&bob).await;
    let within = format!("within {WELL_BEFORE:?} (the durability horizon is {HORIZON:?})");
    let (found, after) = discover_by(
        &mut b,
        cursor,
        &single(&bob, &carol),
        sent + WELL_BEFORE,
        &within,
    )
    .await;
    assert_eq!(found.len(), 1, "only carol's is new: {found:?}");
    assert_eq!(
        (
            found[0].min_seq.as_str(),
            found[0].max_seq.as_str(),
            found[0].removed
        ),
        ("0", "1", false)
    );
    // What the listing says is readable now.
    let msgs = b.sync(&single(&bob, &carol), &[1]).await;
    assert_eq!(msgs.iter().map(text).collect::<Vec<_>>(), ["first words"]);
    // Listed once: nothing more after it.
    let (again, _) = discover_all(&mut b, after, 0).await;
    assert!(again.is_empty(), "{again:?}");
}

on_both!(a_first_message_is_discoverable_before_the_horizon);
