//! Notices are bounded before they are copied: per notice (title, content), per
//! request (userIds, userIds × bytes), per user (pending count and bytes); and a
//! user's pending notices reach her in frames her socket's queue takes, so she can
//! always connect and ack them.

use serde_json::json;

use crate::proto::pb;
use crate::support::*;

const LIMITS: &str = "[limits]\nsend_queue_bytes = 600000\n[limits.notices]\nmax_pending_per_user = 20\n\
max_pending_bytes_per_user = 300000\nmax_content_bytes = 100000\nmax_title_bytes = 512\n\
max_users_per_request = 10\nmax_fanout_bytes_per_request = 150000\n";

/// Content of about 55 KB: five fit the 300,000 pending bytes, six do not.
fn big() -> String {
    "c".repeat(55_000)
}

async fn create(
    f: &Ferry,
    users: &[String],
    id: &str,
    title: &str,
    content: &str,
) -> (u16, String) {
    let body = json!({
        "userIds": users,
        "notice": { "convId": "notice:Big", "noticeId": id, "title": title, "content": content }
    });
    let (s, b) = f.api(reqwest::Method::POST, "/notices", Some(body)).await;
    (s, b.to_string())
}

async fn notices_are_bounded(b: Backend) {
    let c = Cluster::new(b, LIMITS);
    let f = c.start("pod-a");
    let u = unique("u");
    let one = std::slice::from_ref(&u);

    // Per notice, per request: refused before anything is written.
    let (s, e) = create(&f, one, "n", "t", &"c".repeat(100_001)).await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("limits.notices.max_content_bytes"), "{e}");
    let (s, e) = create(&f, one, "n", &"t".repeat(513), "x").await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("limits.notices.max_title_bytes"), "{e}");
    let eleven: Vec<String> = (0..11).map(|i| format!("{u}_{i}")).collect();
    let (s, e) = create(&f, &eleven, "n", "t", "x").await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("limits.notices.max_users_per_request"), "{e}");
    let three: Vec<String> = (0..3).map(|i| format!("{u}_{i}")).collect();
    let (s, e) = create(&f, &three, "n", "t", &big()).await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e.contains("limits.notices.max_fanout_bytes_per_request"),
        "{e}"
    );

    // Per user: accepted until her pending bytes are used up, then refused.
    let deadline = std::time::Instant::now() + 30 * SEC;
    let mut accepted = 0;
    loop {
        let (s, e) = create(&f, one, &format!("n{accepted}"), "t", &big()).await;
        if s == 400 {
            assert!(
                e.contains("limits.notices.max_pending_bytes_per_user"),
                "{e}"
            );
            break;
        }
        assert_eq!(s, 200, "{e}");
        accepted += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "{accepted} accepted, none refused"
        );
        // The check reads what the gateway has applied from the log.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(accepted >= 5, "{accepted}");

    // She connects and gets the five that fit, several frames, socket open.
    let mut u1 = f.connect(&u).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut frames = 0;
    let deadline = std::time::Instant::now() + 20 * SEC;
    while ids.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(list) = u1.notices(2 * SEC).await {
            frames += 1;
            ids.extend(list.into_iter().map(|n| n.notice_id));
        }
    }
    while let Some(list) = u1.notices(2 * SEC).await {
        ids.extend(list.into_iter().map(|n| n.notice_id));
    }
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(frames >= 2, "{frames} frames");
    for id in &ids {
        u1.request(pb::ActiveEvent::AckNotice, ack_notice("notice:Big", id))
            .await
            .ok();
    }
    // Acked, there is room again.
    let deadline = std::time::Instant::now() + 20 * SEC;
    loop {
        let (s, e) = create(&f, one, "after-ack", "t", &big()).await;
        if s == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after acks: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
on_both!(notices_are_bounded);

/// The probe's attacks, with the defaults: a megabyte notice, and 10,000 userIds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_refuse_the_probes_notices() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let u = unique("u");
    let (s, e) = create(&f, std::slice::from_ref(&u), "n", "t", &"c".repeat(1 << 20)).await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("limits.notices.max_content_bytes"), "{e}");
    let many: Vec<String> = (0..10_000).map(|i| format!("{u}_{i}")).collect();
    let (s, e) = create(&f, &many, "n", "t", "x").await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("limits.notices.max_users_per_request"), "{e}");
}
