//! The server API, health, readiness and metrics.

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
    // A well-formed request whose sender may not write to the conversation: 403.
    let (s, body) = f
        .api(
            reqwest::Method::POST,
            "/messages",
            Some(serde_json::json!({"senderId": unique("c"), "convId": conv, "messages": [{"contentType": 11, "content": "not mine"}]})),
        )
        .await;
    assert_eq!(s, 403, "{body}");
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
    // One pod: the counters below are per process.
    let f = c.start_with("pod-a", &[]);
    let get = |p: &str| reqwest::get(f.http(p));
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    eventually(20 * SEC, || async {
        (get("/readyz").await.ok()?.status().as_u16() == 200).then_some(())
    })
    .await;
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    let mut b1 = f.connect_device(&bo, "android", "p").await;
    for i in 0..3 {
        a1.send_text(&conv, &format!("count me {i}")).await.ok();
    }
    b1.collect_messages(3, 10 * SEC).await;
    a1.collect_messages(3, 10 * SEC).await;
    let bad = a1.send_text("dm:nope", "x").await;
    assert_ne!(bad.code, 0);
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    let value = |series: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("metric {series} missing:\n{m}"))
    };
    assert_eq!(
        value("ferry_requests_total{event=\"SendMsgList\",code=\"Success\"}"),
        3.0
    );
    assert_eq!(
        value("ferry_requests_total{event=\"SendMsgList\",code=\"RequestError\"}"),
        1.0
    );
    assert_eq!(
        value("ferry_request_errors_total{code=\"RequestError\"}"),
        1.0
    );
    assert_eq!(value("ferry_seqs_assigned_total"), 3.0);
    // Three messages to two sockets (the sender's own device gets the echo).
    assert_eq!(value("ferry_pushes_delivered_total"), 6.0);
    assert_eq!(value("ferry_connections{platform=\"ios\"}"), 1.0);
    assert_eq!(value("ferry_connections{platform=\"android\"}"), 1.0);
    assert_eq!(
        value("ferry_request_seconds_count{event=\"SendMsgList\"}"),
        4.0
    );
    assert!(value("ferry_log_append_seconds_count") >= 3.0);
}
on_both!(health_readiness_and_metrics);

/// A body the API cannot take is answered in ferry's words, as JSON with the right
/// status; the parser's and the decoder's own messages stay in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_answered_in_ferrys_words() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start_with("pod-a", &[]);
    let post = |body: &'static str, json: bool| {
        let mut req = reqwest::Client::new()
            .post(f.http("/api/v1/messages"))
            .bearer_auth(SERVICE_TOKEN)
            .body(body);
        if json {
            req = req.header("content-type", "application/json");
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
            (status, v["error"].as_str().unwrap_or_default().to_owned())
        }
    };
    let cases = [
        // (body, content-type json, status, what the library would have said)
        ("{\"convId\": ", true, 400, "EOF"),
        (
            "{\"convId\": 7, \"messages\": []}",
            true,
            422,
            "invalid type",
        ),
        ("{\"bogus\": 1}", true, 422, "unknown field"),
        // The fields in order as an array: serde would read a struct from it.
        (
            "[null, \"single:a-b\", [{\"contentType\": 11}], null]",
            true,
            422,
            "invalid type",
        ),
        ("{}", false, 415, "Expected request with"),
        (
            "{\"convId\": \"single:a-b\", \"messages\": [{\"contentType\": 11, \"contentBase64\": \"!!\"}]}",
            true,
            400,
            "symbol",
        ),
    ];
    for (body, json, status, library) in cases {
        let (s, msg) = post(body, json).await;
        assert_eq!(s, status, "{body}: {msg}");
        assert!(!msg.is_empty(), "{body}: no error message");
        assert!(
            !msg.to_lowercase().contains(&library.to_lowercase()),
            "{body}: library text reached the client: {msg}"
        );
    }
}

/// A member change answers once the sequencer has applied it (200, not 202): the
/// member is in the list the moment the call returns, change after change. How long a
/// change takes is measured, not asserted: the call is woken by the write itself
/// rather than by reading the store on a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_changes_answer_as_soon_as_applied() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start_with("pod-a", &[]);
    let g = unique("g");
    // The first change also waits for the sequencer to join.
    f.add_member(&g, "warm").await;
    let mut took = Vec::new();
    for i in 0..25 {
        let start = std::time::Instant::now();
        // 200: applied (202 would be "accepted, not yet applied").
        f.add_member(&g, &format!("u{i}")).await;
        took.push(start.elapsed());
        let (s, body) = f
            .api(reqwest::Method::GET, &format!("/groups/{g}/members"), None)
            .await;
        assert_eq!(s, 200);
        let members = body["members"].as_array().unwrap();
        assert_eq!(members.len(), i + 2, "after u{i}: {body}");
        assert!(
            body.to_string().contains(&format!("\"u{i}\"")),
            "u{i} answered before applied: {body}"
        );
    }
    took.sort();
    println!("per member change: median {:?}", took[took.len() / 2]);
}
