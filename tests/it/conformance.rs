//! WebSocket conformance (RFC 6455): `/ws` answers a client's Close with a Close and
//! closes protocol violations with 1002 and invalid UTF-8 with 1007; and the
//! Autobahn|Testsuite fuzzing client passes against the conformance echo endpoint,
//! which shares `/ws`'s socket configuration and close handling.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::support::{Backend, Client, Cluster};

/// Writes one client frame (masked, as RFC 6455 requires) straight to the socket,
/// bypassing the client library's own checks.
async fn raw_frame(c: &mut Client, first_byte: u8, payload: &[u8]) {
    assert!(payload.len() < 126);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let MaybeTlsStream::Plain(tcp) = c.ws.get_mut() else {
        panic!("plain TCP expected")
    };
    tcp.write_all(&frame).await.unwrap();
    tcp.flush().await.unwrap();
}

/// The next frame must be a Close from the server; returns its code.
async fn close_code(c: &mut Client) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.ws.next())
            .await
            .expect("the server closes within 10 s")
        {
            Some(Ok(WsMessage::Close(Some(f)))) => return f.code.into(),
            Some(Ok(WsMessage::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            other => panic!("expected a Close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_a_close() {
    let cluster = Cluster::new(Backend::Embedded, "");
    let ferry = cluster.start("pod-a");
    let mut c = ferry.connect("closer").await;
    c.ws.send(WsMessage::Close(Some(CloseFrame {
        code: 4001.into(),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_code(&mut c).await, 4001, "the close code is echoed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_1002_and_bad_utf8_with_1007() {
    let cluster = Cluster::new(Backend::Embedded, "");
    let ferry = cluster.start("pod-a");
    // FIN + RSV1 (no extension was negotiated) + binary.
    let mut c = ferry.connect("rsv").await;
    raw_frame(&mut c, 0xc2, b"x").await;
    assert_eq!(close_code(&mut c).await, 1002);
    // Opcode 0x3 is reserved.
    let mut c = ferry.connect("opcode").await;
    raw_frame(&mut c, 0x83, b"x").await;
    assert_eq!(close_code(&mut c).await, 1002);
    // A text frame that is not UTF-8.
    let mut c = ferry.connect("utf8").await;
    raw_frame(&mut c, 0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80").await;
    assert_eq!(close_code(&mut c).await, 1007);
    // The session of another user is unaffected.
    let mut ok = ferry.connect("bystander").await;
    ok.send_text("single:bystander-rsv", "still here")
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_endpoint_is_off_by_default() {
    let cluster = Cluster::new(Backend::Embedded, "");
    let ferry = cluster.start("pod-a");
    let status = reqwest::get(ferry.http("/conformance/echo"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

/// Autobahn sections run: framing (1), pings/pongs (2), reserved bits (3), opcodes (4),
/// fragmentation (5), UTF-8 handling (6), closing handshake (7) and message sizes up
/// to the frame limit (10). Not run: 9 (limits/performance: messages up to 16 MB,
/// above ferry's 1 MB frame limit, which closes them with 1009 by design) and 12/13
/// (permessage-deflate, which ferry does not negotiate: they would only report
/// UNIMPLEMENTED).
const CASES: &[&str] = &["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"];

/// Verdicts accepted besides OK, for `behavior` and `behaviorClose`:
/// - NON-STRICT: the RFC allows it but a stricter peer would do better, e.g. failing
///   an invalid UTF-8 text message only once it is complete rather than at the first
///   bad fragment (6.4.*), which is what the WebSocket layer does;
/// - INFORMATIONAL: the suite records what happened without a requirement, e.g. the
///   close code echoed for a client Close (7.7.*) or whether TCP was closed first.
const ACCEPTED: &[&str] = &["OK", "NON-STRICT", "INFORMATIONAL"];

#[test]
fn autobahn_fuzzingclient_passes() {
    let wstest = std::env::var("FERRY_WSTEST").unwrap_or_else(|_| {
        let cache = std::env::var("FERRY_CACHE")
            .unwrap_or_else(|_| format!("{}/.cache/ferry", std::env::var("HOME").unwrap()));
        format!("{cache}/autobahn-py27/bin/wstest")
    });
    assert!(
        std::path::Path::new(&wstest).exists(),
        "Autobahn|Testsuite not installed at {wstest}: run `bash scripts/autobahn.sh` \
         (scripts/test.sh does)"
    );
    let cluster = Cluster::new(Backend::Embedded, "[server]\nconformance_echo = true\n");
    let ferry = cluster.start("pod-a");
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let spec = serde_json::json!({
        "outdir": reports,
        "servers": [{ "agent": "ferry", "url": format!("ws://{}/conformance/echo", ferry.addr) }],
        "cases": CASES,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_path = dir.path().join("fuzzingclient.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = std::process::Command::new(&wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wstest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("index.json")).unwrap()).unwrap();
    let cases = index["ferry"].as_object().expect("results for agent ferry");
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for (id, r) in cases {
        let (b, c) = (
            r["behavior"].as_str().unwrap_or("?"),
            r["behaviorClose"].as_str().unwrap_or("?"),
        );
        *verdicts.entry(format!("{b}/{c}")).or_default() += 1;
        if !ACCEPTED.contains(&b) || !ACCEPTED.contains(&c) {
            let detail = r["reportfile"]
                .as_str()
                .and_then(|f| std::fs::read(reports.join(f)).ok())
                .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j).ok())
                .map(|j| format!("{} | {}", j["result"], j["resultClose"]))
                .unwrap_or_default();
            failed.push(format!("{id}: {b}/{c} {detail}"));
        }
    }
    eprintln!("autobahn: {} cases, verdicts {verdicts:?}", cases.len());
    // The sections above hold 247 cases; fewer means the run broke off.
    assert!(cases.len() >= 247, "only {} cases ran", cases.len());
    assert!(
        failed.is_empty(),
        "Autobahn cases failed:\n{}",
        failed.join("\n")
    );
}
