//! Outbound HTTP follows no redirect: a CustomRequest upstream or the push service
//! answering 302 to another host sends nothing there, identity headers included.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use prost::Message as _;

use crate::proto::pb;
use crate::support::*;

/// A listener that counts what reaches it (and keeps the identity header it saw).
#[derive(Clone, Default)]
struct Elsewhere {
    hits: Arc<AtomicUsize>,
    users: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

impl Elsewhere {
    async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let me = me.clone();
            async move {
                me.hits.fetch_add(1, Ordering::SeqCst);
                if let Some(u) = headers.get("x-ferry-user-id").and_then(|v| v.to_str().ok()) {
                    me.users.lock().unwrap().push(u.to_owned());
                }
                "internal answer"
            }
        });
        serve(app).await
    }
}

/// An upstream that answers every POST with 302 to `to` (and counts them).
async fn redirecting(to: String, count: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(post(move || {
        let (to, count) = (to.clone(), count.clone());
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            (StatusCode::FOUND, [(header::LOCATION, to)], "")
        }
    }));
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_requests_do_not_follow_redirects() {
    let elsewhere = Elsewhere::default();
    let target = elsewhere.start().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let up = redirecting(format!("{target}/internal/admin"), asked.clone()).await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!("[custom]\nroutes = {{ \"/v1\" = \"{up}\" }}\n"),
    );
    let f = c.start("pod-a");
    let mut a = f.connect("alice").await;
    let call = pb::CustomRequestBody {
        method: "/v1/profile".into(),
        data: b"x".to_vec().into(),
    };
    let r = a
        .request(pb::ActiveEvent::CustomRequest, call.encode_to_vec())
        .await;
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the route's upstream was asked once"
    );
    assert_eq!(
        r.code,
        pb::response_body::Code::RequestError as i32,
        "{r:?}"
    );
    assert!(r.msg.as_deref().unwrap_or("").contains("redirect"), "{r:?}");
    assert_eq!(
        elsewhere.hits.load(Ordering::SeqCst),
        0,
        "{:?}",
        elsewhere.users.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarder_does_not_follow_redirects() {
    let elsewhere = Elsewhere::default();
    let target = elsewhere.start().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let up = redirecting(format!("{target}/push"), asked.clone()).await;
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[offline.forwarder]\nurl = \"{up}/push\"\nbearer_token = \"push-secret-token\"\nbatch_wait_ms = 20\nretry_initial_ms = 50\nretry_max_ms = 200\n"
        ),
    );
    let f = c.start("pod-a");
    let (a, b) = (unique("a"), unique("b"));
    let conv = if a < b {
        format!("single:{a}-{b}")
    } else {
        format!("single:{b}-{a}")
    };
    let mut a1 = f.connect(&a).await;
    let mut m = msg(&a, &conv, "hello");
    m.options.as_mut().unwrap().offline_push = true;
    m.offline_push = Some(pb::msg_data::OfflinePush {
        title: "t".into(),
        content: "c".into(),
        payload: String::new(),
    });
    a1.send_msgs(vec![m], None).await.ok();
    // The push service is asked (and retried): never the host it points to.
    eventually(30 * SEC, || async {
        (asked.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert_eq!(elsewhere.hits.load(Ordering::SeqCst), 0);
}
