//! Connect parameters and client input held to a strict shape: printable metadata,
//! no repeated parameter, short quotes of bad input, a fixed set of platform labels,
//! every frame kind rate-limited, canonical seqs, and no dot ids.

use futures_util::SinkExt as _;
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::proto::pb;
use crate::support::*;

const REQUEST_ERROR: i32 = pb::response_body::Code::RequestError as i32;
const RETRY_ERROR: i32 = pb::response_body::Code::RetryError as i32;

/// Connects with `pairs` added to a valid query for `user`.
async fn attempt_with(
    f: &Ferry,
    user: &str,
    platform: &str,
    device: &str,
    extra: &[(&str, &str)],
) -> Connect {
    let tok = token(user);
    let mut pairs = vec![
        ("token", tok.as_str()),
        ("userId", user),
        ("platform", platform),
        ("deviceId", device),
    ];
    pairs.extend_from_slice(extra);
    connect_url(&format!("{}?{}", f.ws_url(), query(&pairs))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_parameters_are_printable_single_line_and_given_once() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let user = unique("u");
    for (platform, device, extra, named) in [
        (
            "ios",
            "d1",
            vec![("deviceModel", "iPhone\r\nX-Ferry-User-Id: admin")],
            "deviceModel",
        ),
        ("ios", "d1", vec![("appVersion", "1.0\n")], "appVersion"),
        ("ios", "d1", vec![("osVersion", "17\u{0}")], "osVersion"),
        ("ios", "d1", vec![("language", "en\u{202E}")], "language"),
        ("ios\u{2066}", "d1", vec![], "platform"),
        ("ios", "d1\r\n", vec![], "deviceId"),
    ] {
        let Connect::Closed(code, reason) = attempt_with(&f, &user, platform, device, &extra).await
        else {
            panic!("{named} with a control character was accepted");
        };
        assert_eq!(code, 3000);
        assert!(
            reason.contains(named) && reason.contains("control"),
            "{named}: {reason}"
        );
    }
    let Connect::Closed(code, reason) =
        attempt_with(&f, &user, "ios", "d1", &[("userId", &user)]).await
    else {
        panic!("a repeated userId was accepted");
    };
    assert_eq!(code, 3000);
    assert!(
        reason.contains("userId") && reason.contains("more than once"),
        "{reason}"
    );
    // Printable text in any script still connects.
    let Connect::Connected(_) = attempt_with(
        &f,
        &user,
        "ios",
        "d1",
        &[("deviceModel", "Galaxy S24 Ünï 中文")],
    )
    .await
    else {
        panic!("printable metadata was refused");
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_labels_come_from_a_fixed_set() {
    let c = Cluster::new(Backend::Embedded, "");
    let f = c.start("pod-a");
    let _a = f
        .connect_device(&unique("u"), "made-up-platform-42", "d1")
        .await;
    let _b = f.connect_device(&unique("u"), "web", "d1").await;
    let m = f.metrics().await;
    assert!(!m.contains("made-up-platform-42"), "{m}");
    assert!(m.contains("ferry_connections{platform=\"other\"} 1"), "{m}");
    assert!(m.contains("ferry_connections{platform=\"web\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_pongs_and_text_frames_spend_request_tokens() {
    let c = Cluster::new(
        Backend::Embedded,
        "[limits]\nrequests_per_second = 1\nrequest_burst = 3\nmax_refusals = 50\n",
    );
    let f = c.start("pod-a");
    let conv = format!("single:{}-{}", unique("a"), unique("b"));
    for frames in [
        vec![WsMessage::Ping(vec![1].into()); 3],
        vec![WsMessage::Text("x".into()); 3],
        vec![
            WsMessage::Pong(vec![].into()),
            WsMessage::Ping(vec![].into()),
            WsMessage::Text("y".into()),
        ],
    ] {
        let mut a = f.connect(&unique("a")).await;
        for m in frames.clone() {
            a.ws.send(m).await.unwrap();
        }
        // The fourth frame within the second: the burst is spent.
        let req = pb::BatchGetConvSeqReq {
            conv_id_list: vec![conv.clone()],
            ..Default::default()
        };
        let r = a
            .request(pb::ActiveEvent::SyncConvSeq, req.encode_to_vec())
            .await;
        assert_eq!(r.code, RETRY_ERROR, "after {frames:?}: {r:?}");
        assert!(
            r.msg.as_deref().unwrap_or("").contains("rate limit"),
            "{r:?}"
        );
    }
}

async fn strict_input(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, _b, conv, mut a1, _b1) = chat(&f).await;
    a1.send_text(&conv, "one").await.ok();
    for bad in [
        "+1",
        "01",
        " 1",
        "1 ",
        "9223372036854775808",
        "18446744073709551615",
        "0",
    ] {
        let item = pb::batch_get_msg_list_by_conv_id_req::Item {
            conv_id: conv.clone(),
            seq_list: vec![bad.to_owned()],
        };
        let req = pb::BatchGetMsgListByConvIdReq {
            items: vec![item],
            ..Default::default()
        };
        let r = a1
            .request(pb::ActiveEvent::SyncMsgList, req.encode_to_vec())
            .await;
        assert_eq!(r.code, REQUEST_ERROR, "seq {bad:?}: {r:?}");
        assert!(
            r.msg.as_deref().unwrap_or("").contains("invalid seq"),
            "{r:?}"
        );
    }
    assert_eq!(a1.sync(&conv, &[1]).await.len(), 1);
    // A serverMsgId's seq is held to the same bound (GetMsgById): a seq the CQL store
    // cannot hold is the client's error, on both backends, not a server failure.
    for bad in ["9223372036854775808", "18446744073709551615", "0"] {
        let req = pb::GetMsgByIdReq {
            server_msg_id: Some(format!("{conv}-{bad}")),
            ..Default::default()
        };
        let r = a1
            .request(pb::ActiveEvent::GetMsgById, req.encode_to_vec())
            .await;
        assert_eq!(r.code, REQUEST_ERROR, "serverMsgId seq {bad:?}: {r:?}");
        assert!(
            r.msg
                .as_deref()
                .unwrap_or("")
                .contains("invalid serverMsgId"),
            "{r:?}"
        );
    }
    let req = pb::GetMsgByIdReq {
        server_msg_id: Some(format!("{conv}-9223372036854775807")),
        ..Default::default()
    };
    let r = a1
        .request(pb::ActiveEvent::GetMsgById, req.encode_to_vec())
        .await;
    assert_eq!(
        r.code, 0,
        "the largest seq is a valid one, found or not: {r:?}"
    );
    let found = r.decode::<pb::GetMsgByIdResp>().msg_data;
    assert!(
        found.as_ref().is_none_or(|m| m.client_msg_id.is_empty()),
        "no message has that seq: {found:?}"
    );
    // Dot ids name nothing.
    for bad_conv in ["group:.", "group:..", &format!("single:{a}-..")] {
        let r = a1.send_msgs(vec![msg(&a, bad_conv, "x")], None).await;
        assert_eq!(r.code, REQUEST_ERROR, "{bad_conv}: {r:?}");
    }
    let Connect::Closed(code, reason) = f.attempt("..", "ios", "d1").await else {
        panic!("userId \"..\" connected");
    };
    assert_eq!(
        (code, reason.as_str()),
        (3000, "invalid query parameter userId")
    );
    // An error quotes a short prefix of the input, whatever its size.
    let huge = format!("group:{}", "x".repeat(200_000));
    let r = a1.send_msgs(vec![msg(&a, &huge, "x")], None).await;
    assert_eq!(r.code, REQUEST_ERROR);
    let m = r.msg.unwrap_or_default();
    assert!(m.len() < 400, "{} bytes of error message", m.len());
    assert!(m.contains("200006 bytes"), "{m}");
}
on_both!(strict_input);
