//! Restart durability: stop ferry, start a new one on the same data, everything is there.

use crate::support::*;

async fn everything_survives_a_restart(b: Backend) {
    let c = Cluster::new(b, "[pipeline]\nnotice_repush_secs = 1\n");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let g = unique("g");
    f.add_member(&g, &a).await;
    let mut a1 = f.connect(&a).await;
    for i in 0..5 {
        a1.send_text(&conv, &format!("m{i}")).await.ok();
    }
    a1.send_text(&format!("group:{g}"), "group hello")
        .await
        .ok();
    a1.collect_messages(6, 10 * SEC).await;
    let (s, _) = f
        .api(reqwest::Method::POST, "/notices", Some(serde_json::json!({"userIds": [bo], "notice": {"convId": "notice:Sys", "noticeId": "keep-1", "title": "kept"}})))
        .await;
    assert_eq!(s, 200);
    a1.send_msgs(vec![msg(&a, &conv, "delayed across restart")], Some(4))
        .await
        .ok();
    drop(a1);
    assert!(f.stop().success(), "clean exit on SIGTERM");

    let f = c.start("pod-a");
    let mut b1 = f.connect(&bo).await;
    let n = b1.notices(10 * SEC).await.expect("pending notice survived");
    assert_eq!(n[0].notice_id, "keep-1");
    // The delayed message comes due while the pods restart (it may be pushed before
    // bob connects): it must end up sequenced after the five, as seq 6.
    let deadline = std::time::Instant::now() + 45 * SEC;
    while b1.conv_seq(&conv).await.max_seq != "6" {
        assert!(
            std::time::Instant::now() < deadline,
            "the delayed message was not sequenced after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let all = b1.sync(&conv, &[1, 2, 3, 4, 5, 6]).await;
    assert_eq!(
        all.iter().map(text).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4", "delayed across restart"]
    );
    let mut a2 = f.connect(&a).await;
    assert_eq!(
        a2.conv_seq(&format!("group:{g}")).await.max_seq,
        "1",
        "membership and group seqs survived"
    );
    // Seqs continue after the restart with no gap and no duplicate.
    a2.send_text(&conv, "after").await.ok();
    let deadline = std::time::Instant::now() + 10 * SEC;
    let after = loop {
        // The delayed message's own push may come first.
        if let Some(m) = b1
            .messages(10 * SEC)
            .await
            .into_iter()
            .find(|m| text(m) == "after")
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push of the message sent after the restart"
        );
    };
    assert_eq!(after.seq, "7");
}
on_both!(everything_survives_a_restart);

async fn acked_messages_survive_kill_9(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    let mut acked = Vec::new();
    let mut pace = sdk_pace();
    for i in 0..300 {
        pace.tick().await;
        let m = msg(&a, &conv, &format!("k{i}"));
        let id = m.client_msg_id.clone();
        if a1.send_msgs(vec![m], None).await.code == 0 {
            acked.push(id);
        } else {
            refused_backoff().await;
        }
    }
    // No drain, no flush: the process dies mid-stream.
    f.kill9();
    let f = c.start("pod-a");
    let mut b1 = f.connect(&bo).await;
    // Claimed seqs are written right after: poll until the conversation settles.
    let deadline = std::time::Instant::now() + 60 * SEC;
    let (max, stored) = loop {
        let m: u64 = b1.conv_seq(&conv).await.max_seq.parse().unwrap();
        if m >= acked.len() as u64 {
            let stored = b1.sync(&conv, &(1..=m).collect::<Vec<_>>()).await;
            let settled = stored.iter().all(|x| !x.client_msg_id.is_empty());
            if settled || std::time::Instant::now() >= deadline {
                break (m, stored);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{m} of {} acked messages sequenced",
            acked.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq.parse().unwrap()).collect();
    assert_eq!(seqs, (1..=max).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> =
        stored.iter().map(|m| m.client_msg_id.clone()).collect();
    assert_eq!(ids.len() as u64, max, "a message stored twice");
    let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    let gaps: Vec<_> = stored
        .iter()
        .filter(|m| m.client_msg_id.is_empty())
        .map(|m| m.seq.clone())
        .collect();
    assert!(
        lost.is_empty(),
        "acked messages lost: {lost:?}; gaps at seqs {gaps:?}; {} acked, max_seq {max}",
        acked.len()
    );
}
on_both!(acked_messages_survive_kill_9);
