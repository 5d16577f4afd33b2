//! One size budget, end to end (README, "Limits"): what a client may send is derived
//! from the largest record the log takes (`kafka.max_message_bytes`), so nothing it
//! sends is answered Success and then refused by the log; a request over it is
//! refused whole, naming the limit, before anything is stored. Offline-push fields
//! are capped one by one and the offline fan-out of a request is bounded; the
//! forwarder never lets an event the push service refuses hold up the others.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::proto::pb;
use crate::support::*;

const REQUEST_ERROR: i32 = pb::response_body::Code::RequestError as i32;

fn single(a: &str, b: &str) -> String {
    if a < b {
        format!("single:{a}-{b}")
    } else {
        format!("single:{b}-{a}")
    }
}

fn with_push(mut m: pb::MsgData, content: &str) -> pb::MsgData {
    m.options.as_mut().unwrap().offline_push = true;
    m.offline_push = Some(pb::msg_data::OfflinePush {
        title: "t".into(),
        content: content.into(),
        payload: String::new(),
    });
    m
}

async fn a_request_over_the_budget_is_refused_whole_naming_the_limit(b: Backend) {
    // A 200,000-byte log: a client may send one conversation 200,000 less the
    // record framing (16 KiB) in one request.
    let c = Cluster::new(b, "[kafka]\nmax_message_bytes = 200000\n");
    let f = c.start("pod-a");
    let (a, bo, cy) = (unique("a"), unique("b"), unique("c"));
    let (to_b, to_c) = (single(&a, &bo), single(&a, &cy));
    let mut a1 = f.connect(&a).await;
    let small = msg(&a, &to_b, "small");
    let big = msg(&a, &to_c, &"x".repeat(190_000));
    let r = a1.send_msgs(vec![small, big], None).await;
    assert_eq!(r.code, REQUEST_ERROR, "{:?}", r.msg);
    let why = r.msg.unwrap_or_default();
    assert!(why.contains("kafka.max_message_bytes 200000"), "{why}");
    assert!(why.contains(&to_c), "{why}");
    // Nothing of the request was stored: the small message to b neither.
    let mut b1 = f.connect(&bo).await;
    b1.no_messages(2 * SEC).await;
    assert_eq!(a1.conv_seq(&to_b).await.max_seq, "0");
    // Under the limit, the same message goes through.
    let mut c1 = f.connect(&cy).await;
    a1.send_msgs(vec![msg(&a, &to_c, &"x".repeat(150_000))], None)
        .await
        .ok();
    assert_eq!(
        c1.collect_messages(1, 15 * SEC).await[0].content.len(),
        150_000
    );
    // The server API: the same limit, the same answer.
    let (status, body) = f
        .api(
            reqwest::Method::POST,
            "/messages",
            Some(serde_json::json!({
                "senderId": a, "convId": to_b,
                "messages": [{"contentType": 11, "content": "y".repeat(190_000)}],
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("kafka.max_message_bytes"),
        "{body}"
    );
    drop((a1, b1, c1));
    assert!(f.stop().success());
}
on_both!(a_request_over_the_budget_is_refused_whole_naming_the_limit);

async fn offline_push_fields_and_fan_out_are_bounded_before_append(b: Backend) {
    let c = Cluster::new(b, "[offline]\nmax_fanout_bytes = 20000\n");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let g = unique("g");
    let group = format!("group:{g}");
    for u in [&a, &bo] {
        f.add_member(&g, u).await;
    }
    let mut a1 = f.connect(&a).await;
    // A field over its cap (offline.max_content_bytes, 4096).
    let m = with_push(msg(&a, &single(&a, &bo), "x"), &"c".repeat(4097));
    let r = a1.send_msgs(vec![m], None).await;
    assert_eq!(r.code, REQUEST_ERROR, "{:?}", r.msg);
    let why = r.msg.unwrap_or_default();
    assert!(why.contains("offline.max_content_bytes"), "{why}");
    // Each field within its cap, but recipients × bytes over the fan-out bound:
    // 2 members × 3 messages × (4000 + ids) > 20000.
    let list: Vec<pb::MsgData> = (0..3)
        .map(|i| with_push(msg(&a, &group, &format!("m{i}")), &"c".repeat(4000)))
        .collect();
    let r = a1.send_msgs(list, None).await;
    assert_eq!(r.code, REQUEST_ERROR, "{:?}", r.msg);
    let why = r.msg.unwrap_or_default();
    assert!(why.contains("offline.max_fanout_bytes"), "{why}");
    assert_eq!(a1.conv_seq(&group).await.max_seq, "0", "nothing was stored");
    // Within both, it is accepted.
    let r = a1
        .send_msgs(
            vec![with_push(msg(&a, &group, "ok"), &"c".repeat(4000))],
            None,
        )
        .await;
    r.ok();
    drop(a1);
    assert!(f.stop().success());
}
on_both!(offline_push_fields_and_fan_out_are_bounded_before_append);

/// A push service that refuses (413) any body over `limit` bytes, like a proxy in
/// front of it, and keeps the events it accepts.
#[derive(Clone)]
struct Picky {
    limit: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Picky {
    async fn serve(&self) -> String {
        use axum::routing::post;
        let me = self.clone();
        let app = axum::Router::new()
            .route(
                "/push",
                post(move |body: String| {
                    let me = me.clone();
                    async move {
                        if body.len() > me.limit.load(Ordering::SeqCst) {
                            me.refused.fetch_add(1, Ordering::SeqCst);
                            return axum::http::StatusCode::PAYLOAD_TOO_LARGE;
                        }
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        me.accepted
                            .lock()
                            .unwrap()
                            .extend(v["events"].as_array().unwrap().iter().cloned());
                        axum::http::StatusCode::OK
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::disable());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/push")
    }

    fn users(&self) -> BTreeSet<String> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["userId"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn an_event_the_push_service_refuses_never_blocks_another_users(b: Backend) {
    let ep = Picky {
        limit: Arc::new(AtomicUsize::new(8000)),
        refused: Arc::default(),
        accepted: Arc::default(),
    };
    let url = ep.serve().await;
    let c = Cluster::new(
        b,
        &format!(
            "[offline.forwarder]\nurl = \"{url}\"\nbatch_wait_ms = 200\nretry_initial_ms = 50\nretry_max_ms = 200\nmax_refusals = 2\n"
        ),
    );
    let f = c.start_with("pod-a", &[]);
    let (a, bo, cy) = (unique("a"), unique("b"), unique("c"));
    let mut a1 = f.connect(&a).await;
    // bob's event is over what the service takes (as JSON, escapes counted: control
    // characters are six bytes each); cy's is ordinary. Neither is online.
    let big = with_push(msg(&a, &single(&a, &bo), "big"), &"\u{1}".repeat(2000));
    a1.send_msgs(vec![big], None).await.ok();
    let ordinary = with_push(msg(&a, &single(&a, &cy), "hi"), "hello");
    a1.send_msgs(vec![ordinary], None).await.ok();
    eventually(30 * SEC, || async {
        ep.users().contains(&cy).then_some(())
    })
    .await;
    // bob's event is refused max_refusals (2) times in a batch and twice alone,
    // then set aside.
    eventually(30 * SEC, || async {
        let m = f.metrics().await;
        m.lines()
            .any(|l| l.starts_with("ferry_offline_dead_letters_total") && l.ends_with(" 1"))
            .then_some(())
    })
    .await;
    assert!(ep.refused.load(Ordering::SeqCst) >= 2);
    assert!(!ep.users().contains(&bo));
    drop(a1);
    // The embedded log is read by the tools with its pod stopped.
    assert!(f.stop().success());
    // bob's event was set aside after max_refusals, with why.
    let dead = c.admin(&["offline", "dead"]);
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{dead}");
    assert_eq!(lines[0]["userId"], bo.as_str());
    assert!(
        lines[0]["error"].as_str().unwrap().contains("413"),
        "{dead}"
    );
    // Once the service takes larger bodies, a redrive delivers it.
    ep.limit.store(1 << 20, Ordering::SeqCst);
    let out = c.admin(&["offline", "redrive"]);
    assert!(out.contains("redriven 1 events"), "{out}");
    let f = c.start_with("pod-a", &[]);
    eventually(30 * SEC, || async {
        ep.users().contains(&bo).then_some(())
    })
    .await;
    assert!(f.stop().success());
}
on_both!(an_event_the_push_service_refuses_never_blocks_another_users);
