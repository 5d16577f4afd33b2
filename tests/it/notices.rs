//! Notices: pending until acked, pushed on connect, on arrival and at an interval.

use prost::Message as _;
use serde_json::json;

use crate::proto::pb;
use crate::support::*;

async fn create(f: &Ferry, users: &[&str], id: &str, title: &str, once: bool) {
    let body = json!({
        "userIds": users,
        "notice": { "convId": "notice:FriendNotice", "noticeId": id, "title": title, "contentType": 11, "content": "hi", "onlinePushOnce": once }
    });
    let (s, b) = f.api(reqwest::Method::POST, "/notices", Some(body)).await;
    assert_eq!(s, 200, "{b}");
}

async fn notices_repush_until_acked(b: Backend) {
    let c = Cluster::new(b, "[pipeline]\nnotice_repush_secs = 1\n");
    let f = c.start("pod-a");
    let (u, v) = (unique("u"), unique("v"));
    let mut u1 = f.connect(&u).await;
    create(&f, &[&u, &v], "n-1", "first", false).await;
    let got = u1.notices(10 * SEC).await.expect("pushed on arrival");
    assert_eq!(
        (got[0].notice_id.as_str(), got[0].title.as_str()),
        ("n-1", "first")
    );
    // Pushed again at the interval while not acked.
    assert!(u1.notices(5 * SEC).await.is_some(), "re-pushed");
    // The same (convId, noticeId) replaces the earlier one.
    create(&f, &[&u], "n-1", "second", false).await;
    let deadline = std::time::Instant::now() + 10 * SEC;
    loop {
        let n = u1.notices(3 * SEC).await.expect("still pushed");
        if n.len() == 1 && n[0].title == "second" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replacement never pushed"
        );
    }
    // Pushed on connect to a user who was offline.
    let mut v1 = f.connect(&v).await;
    assert_eq!(
        v1.notices(10 * SEC).await.expect("pushed on connect")[0].notice_id,
        "n-1"
    );
    // Ack: no more pushes; acking an unknown notice also succeeds.
    let ack = |id: &str| ack_notice("notice:FriendNotice", id);
    u1.request(pb::ActiveEvent::AckNotice, ack("n-1"))
        .await
        .ok();
    u1.request(pb::ActiveEvent::AckNotice, ack("never-existed"))
        .await
        .ok();
    // The ack has been applied once a fresh connection of the user finds no
    // pending notice; then drain what was already queued, then silence.
    eventually(15 * SEC, || async {
        let mut probe = f.connect_device(&u, "ios", &unique("probe")).await;
        probe
            .notices(std::time::Duration::from_millis(500))
            .await
            .is_none()
            .then_some(())
    })
    .await;
    while u1
        .notices(std::time::Duration::from_millis(100))
        .await
        .is_some()
    {}
    assert!(
        u1.notices(3 * SEC).await.is_none(),
        "acked notice pushed again"
    );
    let r = u1
        .request(
            pb::ActiveEvent::AckNotice,
            pb::AckNoticeDataReq::default().encode_to_vec(),
        )
        .await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
}
on_both!(notices_repush_until_acked);

async fn online_push_once_keeps_nothing(b: Backend) {
    let c = Cluster::new(b, "[pipeline]\nnotice_repush_secs = 1\n");
    let f = c.start("pod-a");
    let (u, v) = (unique("u"), unique("v"));
    let mut u1 = f.connect(&u).await;
    create(&f, &[&u, &v], "once-1", "flash", true).await;
    assert_eq!(u1.notices(10 * SEC).await.unwrap()[0].notice_id, "once-1");
    assert!(u1.notices(3 * SEC).await.is_none(), "pushed only once");
    let mut v1 = f.connect(&v).await;
    assert!(
        v1.notices(3 * SEC).await.is_none(),
        "offline users get nothing later"
    );
}
on_both!(online_push_once_keeps_nothing);
