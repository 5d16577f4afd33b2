//! Delayed delivery: sequenced when due, never early, after what was sent before it.
//! How late after due a message arrives is a number for ferry-bench's delay
//! scenario, not an assertion here.

use std::time::Instant;

use crate::support::*;

async fn delayed_messages_arrive_on_time(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, _, conv, mut a1, mut b1) = chat(&f).await;
    a1.send_text(&conv, "now").await.ok();
    let sent = Instant::now();
    a1.send_msgs(vec![msg(&a, &conv, "in 3 s")], Some(3))
        .await
        .ok();
    a1.send_text(&conv, "also now").await.ok();
    let first = b1.collect_messages(2, 10 * SEC).await;
    assert_eq!(
        first.iter().map(text).collect::<Vec<_>>(),
        ["now", "also now"]
    );
    assert_eq!(
        b1.conv_seq(&conv).await.max_seq,
        "2",
        "not sequenced before due"
    );
    // Pushes are at least once (a record redelivered after a rebalance pushes again;
    // clients drop a seq they hold): skip re-pushes of the first two.
    let late = loop {
        let got: Vec<_> = b1
            .messages(10 * SEC)
            .await
            .into_iter()
            .filter(|m| m.seq != "1" && m.seq != "2")
            .collect();
        if !got.is_empty() {
            break got;
        }
    };
    let waited = sent.elapsed().as_secs_f64();
    assert_eq!(text(&late[0]), "in 3 s");
    assert_eq!(late[0].seq, "3", "sequenced when delivered");
    assert!(waited >= 3.0, "arrived early: {waited:.2}s");
    println!("delayed 3 s, arrived after {waited:.2} s");
}
on_both!(delayed_messages_arrive_on_time);
