//! CustomRequest against a real HTTP upstream started by the test.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use prost::Message as _;

use crate::proto::pb;
use crate::support::*;

async fn upstream() -> String {
    let app = axum::Router::new()
        .route(
            "/v1/relation/getFriendList",
            post(|headers: HeaderMap, body: axum::body::Bytes| async move {
                let user = headers
                    .get("x-ferry-user-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let mut out = format!("friends of {user}: ").into_bytes();
                out.extend_from_slice(&body);
                out
            }),
        )
        .route(
            "/v1/bad",
            post(|| async { (StatusCode::BAD_REQUEST, "no such friend") }),
        )
        .route(
            "/v1/broken",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        )
        .route(
            "/v1/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    serve(app).await
}

/// Serves `app` on a fresh local port; its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A CustomRequest payload calling `method` with `data`.
fn call(method: &str, data: &[u8]) -> Vec<u8> {
    pb::CustomRequestBody {
        method: method.into(),
        data: data.to_vec().into(),
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_requests_reach_the_upstream_and_map_failures() {
    let up = upstream().await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[custom]\ntimeout_ms = 1000\nroutes = {{ \"/v1\" = \"{up}\", \"/v2/down\" = \"http://127.0.0.1:9\" }}\n"
        ),
    );
    let f = c.start("pod-a");
    let mut a = f.connect("alice").await;
    let r = a
        .request(
            pb::ActiveEvent::CustomRequest,
            call("/v1/relation/getFriendList", b"abc"),
        )
        .await;
    assert_eq!(r.ok().data.as_ref(), b"friends of alice: abc");
    use pb::response_body::Code;
    for (method, code, says) in [
        ("/v1/bad", Code::RequestError, "400"),
        ("/v1/broken", Code::RetryError, ""),
        ("/v1/slow", Code::RetryError, "timed out"),
        ("/v2/down/x", Code::RetryError, ""),
        ("/nowhere", Code::RequestError, "unknown method"),
    ] {
        let r = a
            .request(pb::ActiveEvent::CustomRequest, call(method, b"abc"))
            .await;
        let msg = r.msg.unwrap_or_default();
        assert_eq!(r.code, code as i32, "{method}: {msg}");
        assert!(msg.contains(says), "{method}: {msg}");
    }
}

/// Methods cannot leave their route: no dot segments (plain or percent-encoded), and
/// a route prefix covers whole path segments only. The upstream sees none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_methods_cannot_escape_their_route() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            format!("reached {uri}")
        }
    });
    let up = serve(app).await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!("[custom]\nroutes = {{ \"/v1/relation\" = \"{up}/base\" }}\n"),
    );
    let f = c.start("pod-a");
    let mut a = f.connect("alice").await;
    let ok = a
        .request(
            pb::ActiveEvent::CustomRequest,
            call("/v1/relation/list", b""),
        )
        .await;
    assert_eq!(ok.ok().data.as_ref(), b"reached /base/v1/relation/list");
    for method in [
        "/v1/relation/%2e%2e/%2e%2e/admin",
        "/v1/relation/%2E%2E/admin",
        "/v1/relation/../admin",
        "/v1/relation/./x",
        "/v1/relation/x%2fy",
        "/v1/relationship",
        "/v1/relation?x=1",
    ] {
        let r = a
            .request(pb::ActiveEvent::CustomRequest, call(method, b""))
            .await;
        assert_eq!(
            r.code,
            pb::response_body::Code::RequestError as i32,
            "{method}: {r:?}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "only the valid call reached the upstream"
    );
}

/// An upstream answer larger than limits.max_response_bytes is refused, not relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_responses_are_bounded() {
    let app = axum::Router::new()
        .route("/v1/big", post(|| async { vec![b'x'; 300_000] }))
        .route("/v1/small", post(|| async { vec![b'x'; 1000] }));
    let up = serve(app).await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[limits]\nmax_response_bytes = 100000\n[custom]\nroutes = {{ \"/v1\" = \"{up}\" }}\n"
        ),
    );
    let f = c.start("pod-a");
    let mut a = f.connect("alice").await;
    let r = a
        .request(pb::ActiveEvent::CustomRequest, call("/v1/big", b""))
        .await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    assert!(r.msg.unwrap_or_default().contains("100000 bytes"));
    let r = a
        .request(pb::ActiveEvent::CustomRequest, call("/v1/small", b""))
        .await;
    assert_eq!(r.ok().data.len(), 1000);
}

/// Connect metadata reaches an upstream as printable ASCII: every other byte (and `%`)
/// percent-encoded, never a raw non-ASCII byte in a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reaches_the_upstream_percent_encoded() {
    let app = axum::Router::new().route(
        "/v1/echo",
        post(|headers: HeaderMap| async move {
            let v = headers.get("x-ferry-devicemodel").expect("the header");
            assert!(v.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)));
            v.as_bytes().to_vec()
        }),
    );
    let up = serve(app).await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!("[custom]\ntimeout_ms = 2000\nroutes = {{ \"/v1\" = \"{up}\" }}\n"),
    );
    let f = c.start("pod-a");
    let user = unique("u");
    let tok = token(&user);
    let url = format!(
        "{}?{}",
        f.ws_url(),
        query(&[
            ("token", tok.as_str()),
            ("userId", &user),
            ("platform", "ios"),
            ("deviceId", "d1"),
            ("deviceModel", "Galaxy Ünï 中文 50%"),
        ])
    );
    let Connect::Connected(mut a) = connect_url(&url).await else {
        panic!("printable metadata was refused");
    };
    let r = a
        .request(pb::ActiveEvent::CustomRequest, call("/v1/echo", b""))
        .await;
    assert_eq!(
        std::str::from_utf8(r.ok().data.as_ref()).unwrap(),
        "Galaxy %C3%9Cn%C3%AF %E4%B8%AD%E6%96%87 50%25"
    );
}
