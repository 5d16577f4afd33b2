//! Every wait has a timeout: a request body trickled a byte at a time is answered 408
//! within `server.body_read_timeout_secs`, and connections that never become a
//! WebSocket session are capped by `server.max_unconnected_sockets`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::start_bare;
use crate::support::*;

/// Sends `head` then the body one byte every 500 ms (of a declared 1000), reading
/// the answer meanwhile: (the answer's status line, body bytes sent before it came).
async fn trickle(addr: &str, head: String) -> (String, usize) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    });
    let mut sent = 0;
    // 1000 bytes would take 500 s: the answer must come long before.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && sent < 1000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer while trickling"
        );
        if wr.write_all(b" ").await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("an answer")
        .unwrap();
    (status, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_api_body_is_cut_off_with_408() {
    // The default deadline (10 s).
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let head = format!(
        "POST /api/v1/notices HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {SERVICE_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        f.addr
    );
    let (status, sent) = trickle(&f.addr, head).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(sent < 1000, "the whole body was read ({sent} bytes)");
    assert!(
        f.metrics()
            .await
            .contains("ferry_body_read_timeouts_total 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_demo_body_is_cut_off_with_408() {
    let f = start_bare(&[("FERRY_SERVER__BODY_READ_TIMEOUT_SECS", "2")]);
    let head = format!(
        "POST /demo/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        f.addr
    );
    let (status, sent) = trickle(&f.addr, head).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(sent < 1000, "the whole body was read ({sent} bytes)");
}

/// Whether the server closes `tcp` (EOF or reset) within 5 s of our connecting.
async fn closed_at_once(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_capped_and_sessions_do_not_count() {
    let c = Cluster::new(Backend::Embedded, "[server]\nmax_unconnected_sockets = 4\n");
    let f = c.start("pod-a");
    // Sessions are counted once connected, not here: more of them than the cap.
    let mut sessions = Vec::new();
    for i in 0..6 {
        sessions.push(f.connect(&format!("s{i}")).await);
    }
    // Four connections that never send a byte hold the four slots.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(&f.addr).await.unwrap());
    }
    let mut fifth = tokio::net::TcpStream::connect(&f.addr).await.unwrap();
    assert!(
        closed_at_once(&mut fifth).await,
        "a fifth silent connection was kept"
    );
    let q = query(&[
        ("token", &token("bob")),
        ("userId", "bob"),
        ("platform", "ios"),
        ("deviceId", "d"),
    ]);
    assert!(
        try_connect_url(&format!("{}?{q}", f.ws_url()))
            .await
            .is_err(),
        "a socket connected past the cap"
    );
    // The silent ones are still open (their first-byte wait is 60 s); once they go,
    // there is room again.
    for s in &mut silent {
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut b))
                .await
                .is_err(),
            "a silent connection within the cap was closed"
        );
    }
    drop(silent);
    eventually(10 * SEC, || async {
        match try_connect_url(&format!("{}?{q}", f.ws_url())).await {
            Ok(Connect::Connected(_)) => Some(()),
            _ => None,
        }
    })
    .await;
    let m = f.metrics().await;
    assert!(m.contains("ferry_unconnected_refused_total"), "{m}");
    drop(sessions);
}
