//! Connection lifecycle: replacement, kick policy, keep-alive, idle timeout,
//! frame limits, graceful shutdown.

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

async fn same_device_replaces_and_policy_kicks(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let u = unique("u");
    let mut first = f.connect_device(&u, "ios", "phone").await;
    let mut other = f.connect_device(&u, "ios", "tablet").await;
    let _second = f.connect_device(&u, "ios", "phone").await;
    assert_eq!(
        first.closed(10 * SEC).await,
        (1000, "duplicate connection".into())
    );
    // A different device on the same platform is fine by default.
    other.no_messages(Duration::from_millis(500)).await;
    drop(f);

    let c = Cluster::new(b, "[session]\ndevice_policy = \"one_per_platform\"\n");
    let f = c.start("pod-a");
    let mut phone = f.connect_device(&u, "ios", "phone").await;
    let mut web = f.connect_device(&u, "web", "laptop").await;
    let _tablet = f.connect_device(&u, "ios", "tablet").await;
    assert_eq!(phone.closed(10 * SEC).await, (1001, "kick".into()));
    web.no_messages(Duration::from_millis(500)).await;
}
on_both!(same_device_replaces_and_policy_kicks);

async fn kick_closes_the_users_devices(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (u, v) = (unique("u"), unique("v"));
    let mut u1 = f.connect_device(&u, "ios", "phone").await;
    let mut u2 = f.connect_device(&u, "web", "laptop").await;
    let mut v1 = f.connect(&v).await;
    let (s, _) = f
        .api(
            reqwest::Method::POST,
            &format!("/users/{u}/kick"),
            Some(serde_json::json!({"platform": "web"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(u2.closed(10 * SEC).await, (1001, "kick".into()));
    u1.no_messages(Duration::from_millis(300)).await;
    let (s, _) = f
        .api(reqwest::Method::POST, &format!("/users/{u}/kick"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(u1.closed(10 * SEC).await, (1001, "kick".into()));
    v1.no_messages(Duration::from_millis(300)).await;
}
on_both!(kick_closes_the_users_devices);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_alive_and_silence_times_out() {
    let c = Cluster::new(Backend::Embedded, "[session]\nidle_timeout_secs = 2\n");
    let f = c.start("pod-a");
    let mut pinger = f.connect("alice").await;
    let mut silent = f.connect("bob").await;
    // Pings every 0.4 s for 4 s: twice the idle timeout.
    for _ in 0..10 {
        pinger
            .ws
            .send(WsMessage::Ping(b"hb".to_vec().into()))
            .await
            .unwrap();
        pinger.stays_open(Duration::from_millis(200)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(silent.closed(5 * SEC).await, (1000, "idle timeout".into()));
    // The pinging client outlived the idle timeout and still works.
    assert_eq!(pinger.conv_seq("single:alice-bob").await.max_seq, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_close_with_1009() {
    let c = Cluster::new(Backend::Embedded, "[limits]\nmax_frame_bytes = 1024\n");
    let f = c.start("pod-a");
    let mut big = f.connect("alice").await;
    let mut other = f.connect("bob").await;
    big.send_raw(vec![0u8; 4096]).await;
    assert_eq!(big.closed(5 * SEC).await.0, 1009);
    assert_eq!(
        other.conv_seq("single:alice-bob").await.max_seq,
        "0",
        "others unaffected"
    );
}

/// A SIGTERM that arrives the moment ferry says it is listening drains and exits 0:
/// the handler is installed before the announcement, not in a task that may not
/// have run yet (a supervisor stopping a pod that just started).
#[test]
fn sigterm_right_after_start_is_a_clean_stop() {
    let c = Cluster::new(Backend::Embedded, "");
    for i in 0..5 {
        let f = c.start(&format!("pod-{i}"));
        let status = f.stop();
        assert!(status.success(), "stop {i}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1012() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let mut a = f.connect("alice").await;
    let pid = f.child.id();
    let stopper = std::thread::spawn(move || f.stop());
    assert_eq!(a.closed(10 * SEC).await.0, 1012);
    assert!(
        stopper.join().unwrap().success(),
        "ferry {pid} exited uncleanly"
    );
}
