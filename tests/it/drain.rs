//! The shutdown drain: the grace period bounds the whole drain, whatever is stuck.
//! An HTTP request whose body never comes holds its connection, and a role stalled
//! mid-work (a sequencer frozen while holding a claim, armed through `FERRY_FAULTS`)
//! ignores its stop: the process still exits within the grace period of SIGTERM,
//! not the grace period once per step.

use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::proto::pb;
use crate::support::*;

const GRACE: Duration = Duration::from_secs(4);
/// Room for the process to exit once the drain ends (runtime teardown, telemetry),
/// on a loaded machine; well short of a second grace period.
const MARGIN: Duration = Duration::from_millis(2500);

/// An API request on `addr` stopped inside its body: the server has read the head and
/// asked for the body (`100 Continue`), which never comes.
async fn request_stuck_in_its_body(addr: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {SERVICE_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 64\r\nexpect: 100-continue\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + 10 * SEC;
    while !String::from_utf8_lossy(&got).contains("100 Continue") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("the server asks for the body within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "the server closed the request: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_one_grace_period_whatever_is_stuck() {
    let c = Cluster::new(
        Backend::Embedded,
        &format!("[session]\nshutdown_grace_secs = {}\n", GRACE.as_secs()),
    );
    let mut f = c.start_env(
        "pod-a",
        &[],
        &[("FERRY_FAULTS", "sequencer.claimed=pause:600000")],
    );
    // The sequencer freezes holding the claim for alice's message (no ack comes).
    let mut alice = f.connect("alice").await;
    let req = pb::SendMsgListReq {
        msg_data_list: vec![msg("alice", "single:alice-bob", "stuck")],
        ..Default::default()
    };
    let _ = alice
        .try_request(pb::ActiveEvent::SendMsgList, req.encode_to_vec(), SEC / 10)
        .await;
    f.wait_log(&["fault point reached", "sequencer.claimed"], 1, 20 * SEC)
        .await;
    let _held = request_stuck_in_its_body(&f.addr).await;

    let start = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &f.child.id().to_string()])
        .status();
    let status = f.exited(GRACE * 4 + 30 * SEC).await;
    let took = start.elapsed();
    let logs = f.logs();
    assert!(
        took < GRACE + MARGIN,
        "exited {took:?} after SIGTERM; the grace period is {GRACE:?}"
    );
    assert!(
        logs.contains("HTTP connections still open at the drain deadline"),
        "the HTTP request held its connection through the drain:\n{logs}"
    );
    assert!(
        logs.contains("roles did not stop by the drain deadline"),
        "the stalled sequencer held the roles' drain:\n{logs}"
    );
    assert!(
        took >= GRACE,
        "exited {took:?} after SIGTERM, before the grace period ended"
    );
    assert!(status.success(), "exit status {status}");
}
