//! The read side: SyncConvSeq, SyncMsgList, GetMsgById, with push=true variants.

use prost::Message as _;

use crate::proto::pb;
use crate::support::*;

/// A fresh user `a` with a client in a single chat with a fresh peer, and a client
/// of a third user outside that chat: (a, conv, a's client, the outsider's client).
async fn with_outsider(f: &Ferry) -> (String, String, Client, Client) {
    let (a, bo, eve) = (unique("a"), unique("b"), unique("e"));
    let conv = format!("single:{a}-{bo}");
    let a1 = f.connect(&a).await;
    let e1 = f.connect(&eve).await;
    (a, conv, a1, e1)
}

async fn sync_answers_placeholders_and_respects_access(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, conv, mut a1, mut e1) = with_outsider(&f).await;
    a1.send_text(&conv, "one").await.ok();
    a1.send_text(&conv, "two").await.ok();
    a1.collect_messages(2, 10 * SEC).await;

    // SyncConvSeq: known, unknown, malformed, and not readable.
    let req = pb::BatchGetConvSeqReq {
        conv_id_list: vec![conv.clone(), format!("single:{a}-zz"), "garbage".into()],
        ..Default::default()
    };
    let r = a1
        .request(pb::ActiveEvent::SyncConvSeq, req.encode_to_vec())
        .await;
    let map = r.ok().decode::<pb::BatchGetConvSeqResp>().conv_seq_map;
    assert_eq!(map.len(), 3);
    assert_eq!(map[&conv].max_seq, "2");
    assert_eq!(map[&conv].min_seq, "0");
    assert_ne!(map[&conv].update_time, "0");
    assert_eq!(map[&format!("single:{a}-zz")].max_seq, "0");
    assert_eq!(map["garbage"].max_seq, "0");
    assert_eq!(
        e1.conv_seq(&conv).await.max_seq,
        "0",
        "outsiders see nothing"
    );

    // SyncMsgList: stored messages, and placeholders for seqs that do not exist.
    let got = a1.sync(&conv, &[1, 2, 3]).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        (text(&got[0]).as_str(), text(&got[1]).as_str()),
        ("one", "two")
    );
    assert_eq!(
        (
            got[2].seq.as_str(),
            got[2].server_msg_id.clone(),
            got[2].content.len()
        ),
        ("3", format!("{conv}-3"), 0)
    );
    assert!(
        e1.sync(&conv, &[1, 2]).await.is_empty(),
        "outsiders read nothing"
    );

    // push=true: empty answer, messages pushed to this connection.
    let item = pb::batch_get_msg_list_by_conv_id_req::Item {
        conv_id: conv.clone(),
        seq_list: vec!["1".into(), "2".into()],
    };
    let req = pb::BatchGetMsgListByConvIdReq {
        items: vec![item],
        push: true,
        ..Default::default()
    };
    let r = a1
        .request(pb::ActiveEvent::SyncMsgList, req.encode_to_vec())
        .await;
    assert!(
        r.ok()
            .decode::<pb::GetMsgListResp>()
            .msg_data_list
            .is_empty()
    );
    assert_eq!(a1.messages(5 * SEC).await.len(), 2);

    // Limits and malformed seqs.
    for seq_list in [
        (1..=1001).map(|s| s.to_string()).collect(),
        vec!["x".to_owned()],
    ] {
        let item = pb::batch_get_msg_list_by_conv_id_req::Item {
            conv_id: conv.clone(),
            seq_list,
        };
        let r = a1
            .request(
                pb::ActiveEvent::SyncMsgList,
                pb::BatchGetMsgListByConvIdReq {
                    items: vec![item],
                    ..Default::default()
                }
                .encode_to_vec(),
            )
            .await;
        assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    }
}
on_both!(sync_answers_placeholders_and_respects_access);

async fn get_msg_by_id(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, conv, mut a1, mut e1) = with_outsider(&f).await;
    let m = msg(&a, &conv, "findme");
    a1.send_msgs(vec![m.clone()], None).await.ok();
    a1.messages(10 * SEC).await;
    let (by_seq, by_client) = (
        |seq: u64| Some(format!("{conv}-{seq}")),
        Some(m.client_msg_id.clone()),
    );
    let found = get_by_id(&mut a1, by_seq(1), None, false).await.unwrap();
    assert_eq!(text(&found), "findme");
    let found = get_by_id(&mut a1, None, by_client.clone(), false)
        .await
        .unwrap();
    assert_eq!(found.seq, "1");
    // Not found: Success without msgData.
    assert!(get_by_id(&mut a1, by_seq(9), None, false).await.is_none());
    // Others cannot read it by either id.
    assert!(get_by_id(&mut e1, by_seq(1), None, false).await.is_none());
    assert!(get_by_id(&mut e1, None, by_client, false).await.is_none());
    // push=true.
    assert!(get_by_id(&mut a1, by_seq(1), None, true).await.is_none());
    assert_eq!(text(&a1.messages(5 * SEC).await[0]), "findme");
    // Neither id, or a malformed one: RequestError.
    for (server, client) in [(None, None), (Some("nope".to_owned()), None)] {
        let r = a1
            .request(pb::ActiveEvent::GetMsgById, by_id(server, client, false))
            .await;
        assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    }
}
on_both!(get_msg_by_id);

/// A GetMsgById payload.
fn by_id(server: Option<String>, client: Option<String>, push: bool) -> Vec<u8> {
    pb::GetMsgByIdReq {
        server_msg_id: server,
        client_msg_id: client,
        push,
        ..Default::default()
    }
    .encode_to_vec()
}

/// GetMsgById's msgData (the request must succeed).
async fn get_by_id(
    c: &mut Client,
    server: Option<String>,
    client: Option<String>,
    push: bool,
) -> Option<pb::MsgData> {
    let r = c
        .request(pb::ActiveEvent::GetMsgById, by_id(server, client, push))
        .await;
    r.ok().decode::<pb::GetMsgByIdResp>().msg_data
}
