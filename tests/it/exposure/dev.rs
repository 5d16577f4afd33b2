//! Token minting and /demo stay on loopback, answer only to a loopback Host, and a
//! browser on another site cannot open a socket where an Origin policy applies.

use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::{raw_http, refused_start, start_bare};
use crate::support::*;

async fn post_json(url: &str, body: serde_json::Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(10 * SEC)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_on_a_public_listener_nothing_mints_tokens() {
    // As the container image runs: every interface, no key.
    let f = start_bare(&[("FERRY_SERVER__LISTEN", "0.0.0.0:0")]);
    let (status, _) = post_json(
        &f.url("/demo/token"),
        serde_json::json!({ "userId": "alice" }),
    )
    .await;
    assert_eq!(status, 404, "a token was minted on 0.0.0.0");
    let page = reqwest::get(f.url("/demo")).await.unwrap().status();
    assert_eq!(page, 404);
    assert!(
        !f.stdout.iter().any(|l| l.starts_with("chat demo")),
        "{:?}",
        f.stdout
    );
    assert!(
        f.logs().contains("/demo and token minting are off"),
        "{}",
        f.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_alone_is_a_key_not_a_development_setup() {
    // Before, only a signing key left the development secret (and /demo) in use.
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = crate::keys::keypair(dir.path(), "ec");
    let err = refused_start(&[("FERRY_AUTH__SIGNING_KEY_FILE", private.to_str().unwrap())]);
    assert!(err.contains("no key configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_beyond_loopback_is_explicit_loud_and_keyless_only() {
    let f = start_bare(&[
        ("FERRY_SERVER__LISTEN", "0.0.0.0:0"),
        ("FERRY_SERVER__DEMO_BEYOND_LOOPBACK", "true"),
    ]);
    let (status, body) = post_json(
        &f.url("/demo/token"),
        serde_json::json!({ "userId": "alice" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        f.logs().contains("ERROR") && f.logs().contains("server.demo_beyond_loopback is set"),
        "{}",
        f.logs()
    );
    drop(f);
    let err = refused_start(&[
        ("FERRY_SERVER__DEMO_BEYOND_LOOPBACK", "true"),
        ("FERRY_AUTH__HS256_SECRET", "a-configured-secret-0123456789"),
    ]);
    assert!(err.contains("server.demo_beyond_loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_gets_nothing_from_the_dev_endpoints() {
    let f = start_bare(&[]);
    let body = r#"{"userId":"alice"}"#;
    let post = |host: &str| {
        format!(
            "POST /demo/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let port = f.addr.rsplit(':').next().unwrap().to_owned();
    // A page on attacker.example whose name now resolves to 127.0.0.1.
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".into(),
        String::new(),
    ] {
        let answer = raw_http(&f.addr, post(&host).as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 403"),
            "Host {host:?}: {answer}"
        );
        assert!(!answer.contains("token\""), "{answer}");
    }
    let page = raw_http(
        &f.addr,
        format!("GET /demo HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");
    // The demo page itself, opened as http://127.0.0.1 or http://localhost, works.
    for host in [
        f.addr.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let answer = raw_http(&f.addr, post(&host).as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "Host {host:?}: {answer}"
        );
        assert!(answer.contains("\"token\""), "{answer}");
    }
}

/// A WebSocket handshake to `url` carrying `origin` (if any): the HTTP status when
/// it was refused, 101 when it was upgraded.
async fn handshake(url: &str, origin: Option<&str>) -> u16 {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            let _ = tokio::time::timeout(5 * SEC, ws.next()).await;
            resp.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_origin_policy_keeps_other_sites_out_of_ws() {
    let c = Cluster::new(
        Backend::Embedded,
        "[server]\nallowed_origins = [\"https://chat.example.com\"]\n",
    );
    let f = c.start("pod-a");
    let q = query(&[
        ("token", &token("alice")),
        ("userId", "alice"),
        ("platform", "web"),
        ("deviceId", "tab-1"),
    ]);
    let url = format!("{}?{q}", f.ws_url());
    assert_eq!(handshake(&url, Some("https://evil.example")).await, 403);
    assert_eq!(handshake(&url, Some("null")).await, 403);
    assert_eq!(handshake(&url, Some("https://chat.example.com")).await, 101);
    assert_eq!(
        handshake(&url, Some("HTTPS://Chat.Example.com:443")).await,
        101
    );
    // A native client sends no Origin.
    assert_eq!(handshake(&url, None).await, 101);
    assert!(f.metrics().await.contains("ferry_origin_refusals_total 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_demo_on_only_loopback_pages_open_sockets() {
    let f = start_bare(&[]);
    let (status, body) = post_json(
        &f.url("/demo/token"),
        serde_json::json!({ "userId": "alice" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = query(&[
        ("token", &token),
        ("userId", "alice"),
        ("platform", "web"),
        ("deviceId", "tab-1"),
    ]);
    let url = format!("ws://{}/ws?{q}", f.addr);
    let port = f.addr.rsplit(':').next().unwrap();
    assert_eq!(
        handshake(&url, Some(&format!("http://{}", f.addr))).await,
        101
    );
    assert_eq!(
        handshake(&url, Some(&format!("http://localhost:{port}"))).await,
        101
    );
    assert_eq!(handshake(&url, Some("http://attacker.example")).await, 403);
    assert_eq!(handshake(&url, None).await, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_notices_are_bounded_per_user() {
    let f = start_bare(&[("FERRY_LIMITS__NOTICES__MAX_PENDING_PER_USER", "3")]);
    // The count is checked against what the gateway has applied, which follows the
    // log: notices keep being asked for until the refusal comes.
    let deadline = std::time::Instant::now() + 20 * SEC;
    let mut accepted = 0;
    let refusal = loop {
        let (status, body) = post_json(
            &f.url("/demo/notice"),
            serde_json::json!({ "userId": "bob", "title": format!("n{accepted}") }),
        )
        .await;
        match status {
            200 => accepted += 1,
            400 => break body,
            other => panic!("{other}: {body}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{accepted} demo notices accepted, none refused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(accepted >= 3, "{accepted}");
    assert!(
        refusal.contains("limits.notices.max_pending_per_user"),
        "{refusal}"
    );
}
