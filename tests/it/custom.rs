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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
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
    let call = |method: &str| {
        pb::CustomRequestBody {
            method: method.into(),
            data: b"abc".to_vec().into(),
        }
        .encode_to_vec()
    };
    let r = a
        .request(
            pb::ActiveEvent::CustomRequest,
            call("/v1/relation/getFriendList"),
        )
        .await;
    assert_eq!(r.ok().data.as_ref(), b"friends of alice: abc");
    let code = |r: Resp| (r.code, r.msg.unwrap_or_default());
    let (c4, m4) = code(
        a.request(pb::ActiveEvent::CustomRequest, call("/v1/bad"))
            .await,
    );
    assert_eq!(c4, pb::response_body::Code::RequestError as i32);
    assert!(m4.contains("400"), "{m4}");
    let (c5, _) = code(
        a.request(pb::ActiveEvent::CustomRequest, call("/v1/broken"))
            .await,
    );
    assert_eq!(c5, pb::response_body::Code::RetryError as i32);
    let (ct, mt) = code(
        a.request(pb::ActiveEvent::CustomRequest, call("/v1/slow"))
            .await,
    );
    assert_eq!(ct, pb::response_body::Code::RetryError as i32);
    assert!(mt.contains("timed out"), "{mt}");
    let (cd, _) = code(
        a.request(pb::ActiveEvent::CustomRequest, call("/v2/down/x"))
            .await,
    );
    assert_eq!(cd, pb::response_body::Code::RetryError as i32);
    let (cu, mu) = code(
        a.request(pb::ActiveEvent::CustomRequest, call("/nowhere"))
            .await,
    );
    assert_eq!(cu, pb::response_body::Code::RequestError as i32);
    assert!(mu.contains("unknown method"), "{mu}");
}
