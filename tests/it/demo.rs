//! `/demo` and its token minting exist only while ferry runs on its generated
//! development secret; with a configured secret nothing there answers.

use std::process::{Child, Command, Stdio};

use crate::support::*;

const DEMO_ROUTES: [(&str, &str); 5] = [
    ("GET", "/demo"),
    ("GET", "/demo/"),
    ("GET", "/demo/demo.js"),
    ("POST", "/demo/token"),
    ("POST", "/demo/notice"),
];

async fn call(method: &str, url: &str, body: serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(10 * SEC)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_configured_secret_the_demo_and_token_minting_are_off() {
    // The test cluster configures auth.hs256_secret.
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    for (method, path) in DEMO_ROUTES {
        let r = call(
            method,
            &f.http(path),
            serde_json::json!({ "userId": "alice", "title": "t" }),
        )
        .await;
        assert_eq!(r.status(), 404, "{method} {path}");
    }
    assert!(!f.logs().contains("/demo is on"));
}

/// ferry with no key configured at all: the development secret is generated.
struct DevFerry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for DevFerry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dev() -> DevFerry {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .env_remove("FERRY_CONFIG")
        .env("FERRY_DATA_DIR", dir.path())
        .env("FERRY_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let mut addr = None;
    let mut demo_line = false;
    while let Ok(line) = rx.recv_timeout(60 * SEC) {
        if let Some(rest) = line.strip_prefix("ferry listening on http://") {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
        demo_line |= line.starts_with("chat demo: http://");
        if line.starts_with("embedded backend") {
            break;
        }
    }
    let addr = addr.expect("ferry did not start");
    assert!(demo_line, "serve prints where the demo is");
    DevFerry {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_development_secret_the_demo_mints_tokens_that_connect() {
    let f = start_dev();
    let url = |p: &str| format!("http://{}{p}", f.addr);

    let page = call("GET", &url("/demo"), serde_json::Value::Null).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ferry chat demo"));
    let script = call("GET", &url("/demo/demo.js"), serde_json::Value::Null).await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // Bad input is refused before anything is signed or stored.
    for body in [
        serde_json::json!({ "userId": "a-b" }),
        serde_json::json!({ "userId": "" }),
        serde_json::json!({ "userId": "x".repeat(300) }),
        serde_json::json!({ "userId": "alice", "admin": true }),
    ] {
        let r = call("POST", &url("/demo/token"), body.clone()).await;
        assert!(r.status().is_client_error(), "{body} gave {}", r.status());
    }
    let long_title = call(
        "POST",
        &url("/demo/notice"),
        serde_json::json!({ "userId": "alice", "title": "x".repeat(201) }),
    )
    .await;
    assert_eq!(long_title.status(), 400);

    let minted: serde_json::Value = serde_json::from_str(
        &call(
            "POST",
            &url("/demo/token"),
            serde_json::json!({ "userId": "alice" }),
        )
        .await
        .text()
        .await
        .unwrap(),
    )
    .unwrap();
    let token = minted["token"].as_str().unwrap();
    let q = query(&[
        ("token", token),
        ("userId", "alice"),
        ("platform", "web"),
        ("deviceId", "tab-1"),
    ]);
    let Connect::Connected(mut alice) = connect_url(&format!("ws://{}/ws?{q}", f.addr)).await
    else {
        panic!("a demo token was refused");
    };
    // The token is alice's only.
    let q = query(&[
        ("token", token),
        ("userId", "bob"),
        ("platform", "web"),
        ("deviceId", "tab-2"),
    ]);
    let Connect::Closed(code, _) = connect_url(&format!("ws://{}/ws?{q}", f.addr)).await else {
        panic!("alice's token let bob in");
    };
    assert_eq!(code, 3000);

    let r = call(
        "POST",
        &url("/demo/notice"),
        serde_json::json!({ "userId": "alice", "title": "hello from the demo" }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let notices = alice.notices(10 * SEC).await.expect("the demo notice");
    assert_eq!(notices[0].title, "hello from the demo");
    assert_eq!(notices[0].conv_id, "notice:Demo");
}
