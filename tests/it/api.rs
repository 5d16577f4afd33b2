//! The server API, health, readiness and metrics.

use crate::on_both;
use crate::support::*;

async fn api_sends_as_user_and_system(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut b1 = f.connect(&bo).await;
    let (s, body) = f
        .api(reqwest::Method::POST, "/messages", Some(serde_json::json!({"senderId": a, "convId": conv, "messages": [{"contentType": 11, "content": "from the backend"}]})))
        .await;
    assert_eq!((s, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    let got = b1.messages(10 * SEC).await;
    assert_eq!(
        (text(&got[0]).as_str(), got[0].sender_id.as_str()),
        ("from the backend", a.as_str())
    );
    let (s, _) = f.api(reqwest::Method::POST, "/messages", Some(serde_json::json!({"convId": conv, "messages": [{"contentType": 4, "content": "system tip"}]}))).await;
    assert_eq!(s, 200);
    let got = b1.messages(10 * SEC).await;
    assert_eq!((got[0].sender_id.as_str(), got[0].seq.as_str()), ("", "2"));
    let (s, _) = f
        .api(
            reqwest::Method::POST,
            "/messages",
            Some(serde_json::json!({"convId": "bad", "messages": [{"contentType": 4}]})),
        )
        .await;
    assert_eq!(s, 400);
    // Without the service token: 401.
    let r = reqwest::Client::new()
        .post(f.http("/api/v1/messages"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
on_both!(api_sends_as_user_and_system);

async fn health_readiness_and_metrics(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let get = |p: &str| reqwest::get(f.http(p));
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    let ready = eventually(20 * SEC, || async {
        (get("/readyz").await.ok()?.status().as_u16() == 200).then_some(())
    })
    .await;
    let _ = ready;
    let (a, bo) = (unique("a"), unique("b"));
    let mut a1 = f.connect(&a).await;
    a1.send_text(&format!("single:{a}-{bo}"), "count me")
        .await
        .ok();
    a1.messages(10 * SEC).await;
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    for needle in [
        "ferry_requests_total{event=\"SendMsgList\",code=\"Success\"}",
        "ferry_seqs_assigned_total",
        "ferry_pushes_delivered_total",
        "ferry_connections{platform=\"ios\"}",
        "ferry_request_seconds_bucket",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
}
on_both!(health_readiness_and_metrics);
