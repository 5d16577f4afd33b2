//! The read side: SyncConvSeq, SyncMsgList, GetMsgById, with push=true variants.

use prost::Message as _;

use crate::proto::pb;
use crate::support::*;

async fn sync_answers_placeholders_and_respects_access(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo, eve) = (unique("a"), unique("b"), unique("e"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    let mut e1 = f.connect(&eve).await;
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
    let item = pb::batch_get_msg_list_by_conv_id_req::Item {
        conv_id: conv.clone(),
        seq_list: (1..=1001).map(|s| s.to_string()).collect(),
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
    let item = pb::batch_get_msg_list_by_conv_id_req::Item {
        conv_id: conv.clone(),
        seq_list: vec!["x".into()],
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
on_both!(sync_answers_placeholders_and_respects_access);

async fn get_msg_by_id(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (a, bo, eve) = (unique("a"), unique("b"), unique("e"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    let mut e1 = f.connect(&eve).await;
    let m = msg(&a, &conv, "findme");
    a1.send_msgs(vec![m.clone()], None).await.ok();
    a1.messages(10 * SEC).await;
    let by = |server: Option<String>, client: Option<String>, push: bool| {
        pb::GetMsgByIdReq {
            server_msg_id: server,
            client_msg_id: client,
            push,
            ..Default::default()
        }
        .encode_to_vec()
    };

    let r = a1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(Some(format!("{conv}-1")), None, false),
        )
        .await;
    assert_eq!(
        text(&r.ok().decode::<pb::GetMsgByIdResp>().msg_data.unwrap()),
        "findme"
    );
    let r = a1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(None, Some(m.client_msg_id.clone()), false),
        )
        .await;
    assert_eq!(
        r.ok().decode::<pb::GetMsgByIdResp>().msg_data.unwrap().seq,
        "1"
    );
    // Not found: Success without msgData.
    let r = a1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(Some(format!("{conv}-9")), None, false),
        )
        .await;
    assert!(r.ok().decode::<pb::GetMsgByIdResp>().msg_data.is_none());
    // Others cannot read it by either id.
    let r = e1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(Some(format!("{conv}-1")), None, false),
        )
        .await;
    assert!(r.ok().decode::<pb::GetMsgByIdResp>().msg_data.is_none());
    let r = e1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(None, Some(m.client_msg_id.clone()), false),
        )
        .await;
    assert!(r.ok().decode::<pb::GetMsgByIdResp>().msg_data.is_none());
    // push=true.
    let r = a1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(Some(format!("{conv}-1")), None, true),
        )
        .await;
    assert!(r.ok().decode::<pb::GetMsgByIdResp>().msg_data.is_none());
    assert_eq!(text(&a1.messages(5 * SEC).await[0]), "findme");
    // Neither id, or a malformed one: RequestError.
    let r = a1
        .request(pb::ActiveEvent::GetMsgById, by(None, None, false))
        .await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    let r = a1
        .request(
            pb::ActiveEvent::GetMsgById,
            by(Some("nope".into()), None, false),
        )
        .await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
}
on_both!(get_msg_by_id);
