//! Sending: validation, errors, push to every device, idempotence and edits.

use prost::Message as _;

use crate::proto::pb;
use crate::support::*;

async fn push_reaches_every_device_of_both_users(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect_device(&a, "ios", "phone").await;
    let mut a2 = f.connect_device(&a, "web", "laptop").await;
    let mut b1 = f.connect_device(&bo, "android", "phone").await;
    a1.send_text(&conv, "hello").await.ok();
    for cl in [&mut a1, &mut a2, &mut b1] {
        let got = cl.messages(10 * SEC).await;
        assert_eq!(got.len(), 1);
        assert_eq!(text(&got[0]), "hello");
        assert_eq!(got[0].seq, "1");
        assert_eq!(got[0].server_msg_id, format!("{conv}-1"));
        assert_eq!(got[0].sender_id, a);
        assert!(!got[0].server_time.is_empty());
    }
    // Seqs continue without gaps, in order.
    for i in 0..5 {
        b1.send_text(&conv, &format!("m{i}")).await.ok();
    }
    let got = a1.collect_messages(5, 10 * SEC).await;
    let seqs: Vec<_> = got.iter().map(|m| m.seq.clone()).collect();
    assert_eq!(seqs, ["2", "3", "4", "5", "6"]);
}
on_both!(push_reaches_every_device_of_both_users);

async fn invalid_sends_get_request_error_and_lose_nothing(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo, conv, mut a1, mut b1) = chat(&f).await;

    let cases: Vec<(Vec<pb::MsgData>, Option<i32>, &str)> = vec![
        (vec![], None, "empty"),
        (vec![msg(&a, "dm:x-y", "x")], None, "convId"),
        (vec![msg(&bo, &conv, "x")], None, "senderId"),
        (
            vec![msg(&a, "single:someone-else", "x")],
            None,
            "may not send",
        ),
        (
            vec![msg(&a, "group:nobody_here", "x")],
            None,
            "may not send",
        ),
        (
            vec![msg(&a, &conv, "x")],
            Some(864_001),
            "deliverAfter must be at most 864000 seconds",
        ),
        (vec![msg(&a, &conv, "x")], Some(-5), "deliverAfter"),
        (
            (0..101).map(|_| msg(&a, &conv, "x")).collect(),
            None,
            "at most 100",
        ),
    ];
    for (msgs, delay, needle) in cases {
        let r = a1.send_msgs(msgs, delay).await;
        assert_eq!(
            r.code,
            pb::response_body::Code::RequestError as i32,
            "{needle}"
        );
        let m = r.msg.unwrap_or_default();
        assert!(m.contains(needle), "{m:?} should mention {needle:?}");
    }
    // Malformed frames: answered, and the socket keeps working.
    a1.send_raw(vec![0xff, 0xff, 0xff]).await;
    let r = a1.response("").await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    let bad_payload = pb::RequestBody {
        event: 0,
        req_id: "bad".into(),
        data: vec![0xff, 0x01].into(),
    };
    a1.send_raw(bad_payload.encode_to_vec()).await;
    assert_eq!(
        a1.response("bad").await.code,
        pb::response_body::Code::RequestError as i32
    );
    let unknown = pb::RequestBody {
        event: 42,
        req_id: "unk".into(),
        data: Default::default(),
    };
    a1.send_raw(unknown.encode_to_vec()).await;
    let r = a1.response("unk").await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    // Empty senderId is filled; nothing above was stored.
    let mut m = msg(&a, &conv, "after errors");
    m.sender_id.clear();
    a1.send_msgs(vec![m], None).await.ok();
    let got = b1.messages(10 * SEC).await;
    assert_eq!(
        (
            got[0].seq.as_str(),
            got[0].sender_id.as_str(),
            text(&got[0]).as_str()
        ),
        ("1", a.as_str(), "after errors")
    );
}
on_both!(invalid_sends_get_request_error_and_lose_nothing);

async fn retries_are_deduplicated_and_edits_rewrite_the_original(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, _, conv, mut a1, mut b1) = chat(&f).await;
    let original = msg(&a, &conv, "first");
    a1.send_msgs(vec![original.clone()], None).await.ok();
    a1.send_msgs(vec![original.clone()], None).await.ok();
    assert_eq!(b1.messages(10 * SEC).await[0].seq, "1");
    // The retry is echoed to the sender only, with the original seq.
    let echoes = a1.collect_messages(2, 10 * SEC).await;
    assert!(echoes.iter().all(|m| m.seq == "1"));
    b1.no_messages(SEC).await;
    let mut revoke = original.clone();
    revoke.content_type = 3;
    revoke.content = b"revoked".to_vec().into();
    a1.send_msgs(vec![revoke], None).await.ok();
    let got = b1.messages(10 * SEC).await;
    assert_eq!((got[0].seq.as_str(), got[0].content_type), ("2", 3));
    let stored = b1.sync(&conv, &[1, 2]).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (stored[0].content_type, text(&stored[0]).as_str()),
        (3, "revoked"),
        "original rewritten"
    );
    assert_eq!(stored[0].seq, "1");
    assert_eq!(b1.conv_seq(&conv).await.max_seq, "2");
}
on_both!(retries_are_deduplicated_and_edits_rewrite_the_original);

async fn transient_messages_are_pushed_but_not_stored(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, _, conv, mut a1, mut b1) = chat(&f).await;
    let mut typing = msg(&a, &conv, "typing…");
    typing.content_type = 1;
    typing.options = Some(pb::msg_data::Options {
        storage_for_server: false,
        ..Default::default()
    });
    a1.send_msgs(vec![typing], None).await.ok();
    let got = b1.messages(10 * SEC).await;
    assert_eq!((got[0].content_type, got[0].seq.as_str()), (1, ""));
    assert_eq!(b1.conv_seq(&conv).await.max_seq, "0");
    // Absent options mean an ordinary stored message (the original server crashed here).
    let mut plain = msg(&a, &conv, "plain");
    plain.options = None;
    plain.offline_push = None;
    a1.send_msgs(vec![plain], None).await.ok();
    assert_eq!(b1.messages(10 * SEC).await[0].seq, "1");
}
on_both!(transient_messages_are_pushed_but_not_stored);

async fn groups_deliver_to_members_and_respect_min_seq(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let g = unique("g");
    let conv = format!("group:{g}");
    let (a, bo, late) = (unique("a"), unique("b"), unique("l"));
    f.add_member(&g, &a).await;
    f.add_member(&g, &bo).await;
    let mut a1 = f.connect(&a).await;
    let mut b1 = f.connect(&bo).await;
    let mut l1 = f.connect(&late).await;
    for i in 0..3 {
        a1.send_text(&conv, &format!("before {i}")).await.ok();
    }
    assert_eq!(b1.collect_messages(3, 10 * SEC).await.len(), 3);
    l1.no_messages(SEC).await;
    // Not a member: may not send, sees zeros, gets nothing back.
    let r = l1.send_text(&conv, "let me in").await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    let cs = l1.conv_seq(&conv).await;
    assert_eq!(
        (
            cs.min_seq.as_str(),
            cs.max_seq.as_str(),
            cs.update_time.as_str()
        ),
        ("0", "0", "0")
    );
    assert!(l1.sync(&conv, &[1, 2, 3]).await.is_empty());
    // Joins now: starts at seq 4.
    let (s, body) = f
        .api(
            reqwest::Method::PUT,
            &format!("/groups/{g}/members/{late}"),
            None,
        )
        .await;
    assert_eq!((s, body["minSeq"].as_u64()), (200, Some(4)));
    a1.send_text(&conv, "after").await.ok();
    assert_eq!(l1.messages(10 * SEC).await[0].seq, "4");
    let cs = l1.conv_seq(&conv).await;
    assert_eq!((cs.min_seq.as_str(), cs.max_seq.as_str()), ("4", "4"));
    let seen = l1.sync(&conv, &[1, 2, 3, 4]).await;
    assert_eq!(
        seen.iter().map(|m| m.seq.as_str()).collect::<Vec<_>>(),
        ["4"]
    );
    // Removed: no more pushes.
    let (s, _) = f
        .api(
            reqwest::Method::DELETE,
            &format!("/groups/{g}/members/{late}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    a1.send_text(&conv, "bye").await.ok();
    b1.collect_messages(2, 10 * SEC).await;
    l1.no_messages(SEC).await;
}
on_both!(groups_deliver_to_members_and_respect_min_seq);

async fn one_client_cannot_hurt_another(b: Backend) {
    let c = Cluster::new(b, "[limits]\nrequests_per_second = 5\nrequest_burst = 5\n");
    let f = c.start("pod-a");
    let (_, _, conv, mut noisy, mut calm) = chat(&f).await;
    // Flood past the rate limit: some answers are RetryError, none is lost silently.
    for i in 0..20 {
        let body = pb::RequestBody {
            event: 1,
            req_id: format!("f{i}"),
            data: pb::BatchGetConvSeqReq {
                conv_id_list: vec![conv.clone()],
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
        };
        noisy.send_raw(body.encode_to_vec()).await;
    }
    let mut retry = 0;
    for i in 0..20 {
        let r = noisy.response(&format!("f{i}")).await;
        if r.code == pb::response_body::Code::RetryError as i32 {
            assert!(r.msg.unwrap().contains("rate limit"));
            retry += 1;
        }
    }
    // Past the burst of 5, a refused frame pauses reading until the next token, so
    // about every other frame of the rest is refused.
    assert!(retry >= 5, "only {retry} of 20 were rate limited");
    // The calm user is unaffected.
    calm.send_text(&conv, "still fine").await.ok();
    assert_eq!(text(&calm.messages(10 * SEC).await[0]), "still fine");
}
on_both!(one_client_cannot_hurt_another);

async fn pipelined_sends_keep_order(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (_, _, conv, mut a1, mut b1) = chat(&f).await;
    // Many SendMsgList frames without waiting for acks: the connection has several
    // appends in flight, yet acks come in request order and seqs follow it.
    const N: usize = 40;
    for i in 0..N {
        let body = pb::RequestBody {
            event: pb::ActiveEvent::SendMsgList as i32,
            req_id: format!("p{i}"),
            data: pb::SendMsgListReq {
                msg_data_list: vec![msg(&a1.user.clone(), &conv, &format!("m{i}"))],
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
        };
        a1.send_raw(body.encode_to_vec()).await;
    }
    let mut acks = Vec::new();
    let deadline = tokio::time::Instant::now() + 20 * SEC;
    while acks.len() < N && tokio::time::Instant::now() < deadline {
        match a1.next_frame(SEC).await {
            Frame::Push(p) if p.event == pb::PushEvent::PushResponseBody as i32 => {
                let r = pb::ResponseBody::decode(p.data).unwrap();
                assert_eq!(r.code, 0, "{} was not acked", r.req_id);
                acks.push(r.req_id);
            }
            Frame::Closed => panic!("socket closed"),
            _ => {}
        }
    }
    let want: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    assert_eq!(acks, want, "acks in request order");
    let got = b1.collect_messages(N, 20 * SEC).await;
    let mut order: Vec<(u64, String)> = got
        .iter()
        .map(|m| (m.seq.parse().unwrap(), text(m)))
        .collect();
    order.sort();
    let want: Vec<(u64, String)> = (0..N).map(|i| (i as u64 + 1, format!("m{i}"))).collect();
    assert_eq!(order, want, "seqs follow the request order");
}
on_both!(pipelined_sends_keep_order);
