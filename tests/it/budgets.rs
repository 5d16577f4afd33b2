//! Budgets of an account over all its sockets on a pod, and of answers in flight:
//! bytes of answers per connection, account and process (RSS growth bounded by the
//! configured budget), CQL reads bounded by what the answer may hold, requests per
//! second, in flight and connects per minute of one account.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::proto::pb;
use crate::support::*;

const SUCCESS: i32 = pb::response_body::Code::Success as i32;
const REQUEST_ERROR: i32 = pb::response_body::Code::RequestError as i32;
const RETRY_ERROR: i32 = pb::response_body::Code::RetryError as i32;

/// A message whose content is `size` bytes.
fn big_msg(sender: &str, conv: &str, size: usize) -> pb::MsgData {
    let mut m = msg(sender, conv, "");
    m.content = vec![b'x'; size].into();
    m
}

fn sync_req(conv: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    pb::BatchGetMsgListByConvIdReq {
        items: vec![pb::batch_get_msg_list_by_conv_id_req::Item {
            conv_id: conv.to_owned(),
            seq_list: seqs.into_iter().map(|s| s.to_string()).collect(),
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

fn frame(event: pb::ActiveEvent, req_id: String, data: Vec<u8>) -> WsMessage {
    WsMessage::Binary(
        pb::RequestBody {
            event: event as i32,
            req_id,
            data: data.into(),
        }
        .encode_to_vec()
        .into(),
    )
}

/// A response's code and CommonResp message, None for a push.
fn response(b: &[u8]) -> Option<(i32, String)> {
    let p = pb::PushBody::decode(b).ok()?;
    if p.event != pb::PushEvent::PushResponseBody as i32 {
        return None;
    }
    let body = pb::ResponseBody::decode(p.data).ok()?;
    let msg = pb::CustomResponseError::decode(body.data.clone())
        .ok()
        .and_then(|e| e.common_resp)
        .and_then(|c| c.msg)
        .unwrap_or_default();
    Some((body.code, msg))
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Sends `n` messages of `size` bytes to a fresh 1:1 conversation and waits until
/// they are stored.
async fn stored(f: &Ferry, n: u64, size: usize) -> (String, String, String) {
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    for _ in 0..n {
        a1.send_msgs(vec![big_msg(&a, &conv, size)], None)
            .await
            .ok();
    }
    let deadline = Instant::now() + 30 * SEC;
    while a1.conv_seq(&conv).await.max_seq != n.to_string() {
        assert!(Instant::now() < deadline, "{conv} never reached seq {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (a, bo, conv)
}

/// One account, 20 sockets, 32 SyncMsgList of ~4 MB each in flight on every socket
/// (640 answers, 2.5 GB if built at once): ferry grows by what the account's answer
/// budget allows, not by what was asked. Every request is answered, Success or a
/// RetryError naming the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_with_many_sockets_grows_ferry_by_its_answer_budget_at_most() {
    // The account's answer budget (6 MiB here, the connections' too) is the bound
    // under test; the rate and in-flight limits are out of the way.
    let c = Cluster::new(
        Backend::Embedded,
        "[limits]\nrequests_per_second = 1000\nrequest_burst = 1000\n\
         [budgets]\naccount_answer_bytes = 6291456\nconnection_answer_bytes = 6291456\n\
         account_requests_per_second = 100000\n\
         account_request_burst = 100000\naccount_in_flight = 1000\n",
    );
    let f = c.start("pod-a");
    let (_, bo, conv) = stored(&f, 10, 400_000).await;
    let mut sockets = Vec::new();
    for i in 0..20 {
        sockets.push(f.connect_device(&bo, "ios", &format!("d{i}")).await);
    }
    let pid = f.child.id();
    // The peak is measured from here: clear_refs 5 resets VmHWM to the current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status_kb(pid, "VmRSS:");
    let req = sync_req(&conv, 1..=10);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(s, mut c)| {
            let req = req.clone();
            tokio::spawn(async move {
                for i in 0..32 {
                    let f = frame(
                        pb::ActiveEvent::SyncMsgList,
                        format!("s{s}-{i}"),
                        req.clone(),
                    );
                    c.ws.send(f).await.unwrap();
                }
                let mut answers = Vec::new();
                while answers.len() < 32 {
                    match tokio::time::timeout(Duration::from_secs(60), c.ws.next()).await {
                        Ok(Some(Ok(WsMessage::Binary(b)))) => answers.extend(response(&b)),
                        Ok(Some(Ok(_))) => {}
                        other => panic!("socket {s}: {} answers, then {other:?}", answers.len()),
                    }
                }
                answers
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        for (code, msg) in t.await.unwrap() {
            match code {
                SUCCESS => ok += 1,
                RETRY_ERROR => {
                    assert!(msg.contains("bytes of answers in flight"), "{msg}");
                    refused += 1;
                }
                _ => panic!("answered {code}: {msg}"),
            }
        }
    }
    let peak = status_kb(pid, "VmHWM:");
    let grown_mb = peak.saturating_sub(before) / 1024;
    println!(
        "20 sockets x 32 SyncMsgList of 4 MB: {ok} answered, {refused} refused; \
         RSS before {} MB, peak {} MB (+{grown_mb} MB)",
        before / 1024,
        peak / 1024
    );
    assert_eq!(ok + refused, 640);
    assert!(ok >= 4, "only {ok} answers fit the budget");
    // The bound: the account's 6 MiB of answers, four times over while an answer is
    // encoded (its messages, their protobuf form, the response, the frame), and as
    // much again that the allocator may still hold of answers freed moments before
    // (measured: at a 12 MiB budget the peak was 42-76 MB over repeated runs on a
    // loaded machine), 48 MiB, plus 16 MiB for the store's cache of what was read.
    assert!(
        grown_mb <= 64,
        "ferry grew by {grown_mb} MB for one account's answers"
    );
}

/// Reads stop at the answer budget: a SyncMsgList for 30 messages of 300 KB (9 MB)
/// against a 4 MiB answer limit reads what the answer may hold and one piece more,
/// counted by the store's own row counter, then answers RequestError.
async fn reads_stop_at_the_answer_budget(b: Backend) {
    let c = Cluster::new(b, "");
    let f = c.start("pod-a");
    let (_, bo, conv) = stored(&f, 30, 300_000).await;
    let mut b1 = f.connect(&bo).await;
    let before = counter(&f, "ferry_store_message_rows_total").await;
    let r = b1
        .request(pb::ActiveEvent::SyncMsgList, sync_req(&conv, 1..=30))
        .await;
    assert_eq!(r.code, REQUEST_ERROR, "{r:?}");
    assert!(r.msg.as_deref().unwrap_or("").contains("exceed"), "{r:?}");
    let rows = counter(&f, "ferry_store_message_rows_total").await - before;
    // 4 MiB holds 13 messages of 300 KB; the 14th passes it. A piece is at most the
    // answer's room plus one message of the largest size (1 MiB frames): 5 rows.
    println!("rows read for a refused 9 MB answer: {rows}");
    assert!(
        (14..=19).contains(&rows),
        "{rows} rows read for an answer refused at 4 MiB"
    );
}
on_both!(reads_stop_at_the_answer_budget);

/// A SyncMsgList whose seqs span more store partitions (conversation × 1000 seqs)
/// than `budgets.max_sync_partitions` is refused before any read; one within it is
/// answered, with one statement per partition at most.
async fn partitions_per_sync_are_bounded(b: Backend) {
    let c = Cluster::new(b, "[budgets]\nmax_sync_partitions = 100\n");
    let f = c.start("pod-a");
    let (a, bo) = (unique("a"), unique("b"));
    let conv = format!("single:{a}-{bo}");
    let mut a1 = f.connect(&a).await;
    a1.send_text(&conv, "one").await.ok();
    // Sequenced: the sequencer's own reads are done before counting starts.
    let deadline = Instant::now() + 30 * SEC;
    while a1.conv_seq(&conv).await.max_seq != "1" {
        assert!(Instant::now() < deadline, "never sequenced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = counter(&f, "ferry_store_message_statements_total").await;
    // 1,000 seqs in 1,000 partitions: 1,000 CQL queries before.
    let r = a1
        .request(
            pb::ActiveEvent::SyncMsgList,
            sync_req(&conv, (0..1000).map(|i| 1 + i * 1000)),
        )
        .await;
    assert_eq!(r.code, REQUEST_ERROR, "{r:?}");
    assert!(
        r.msg.as_deref().unwrap_or("").contains("partitions"),
        "{r:?}"
    );
    let statements = counter(&f, "ferry_store_message_statements_total").await - before;
    assert_eq!(statements, 0, "read before refusing");
    // 100 partitions: answered, placeholders for what does not exist.
    let r = a1
        .request(
            pb::ActiveEvent::SyncMsgList,
            sync_req(&conv, (0..100).map(|i| 1 + i * 1000)),
        )
        .await;
    r.ok();
    let list: pb::GetMsgListResp = r.decode();
    assert_eq!(list.msg_data_list.len(), 100);
    let statements = counter(&f, "ferry_store_message_statements_total").await - before;
    assert!(
        statements <= 100,
        "{statements} statements for 100 partitions"
    );
}
on_both!(partitions_per_sync_are_bounded);

/// A SyncConvSeq of one conversation, answered with any code.
async fn seq_req(c: &mut Client) -> Resp {
    let req = pb::BatchGetConvSeqReq {
        conv_id_list: vec!["single:x-y".into()],
        ..Default::default()
    };
    c.request(pb::ActiveEvent::SyncConvSeq, req.encode_to_vec())
        .await
}

/// Counter `name` summed over this pod and its peer (on Kafka a user may be served
/// by either; 0 before it is first counted).
async fn counter(f: &Ferry, name: &str) -> u64 {
    let mut text = f.metrics().await;
    if let Some(peer) = &f.peer {
        text.push_str(&peer.metrics().await);
    }
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The account's request rate holds over all its sockets: 4 sockets, each within
/// its own limit, together get the account's burst and rate, and are refused beyond
/// it with a reason; another account is not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_request_rate_is_shared_by_its_sockets() {
    let c = Cluster::new(
        Backend::Embedded,
        "[limits]\nrequests_per_second = 100\nrequest_burst = 100\n\
         [budgets]\naccount_requests_per_second = 1\naccount_request_burst = 10\n",
    );
    let f = c.start("pod-a");
    let u = unique("u");
    let mut sockets = Vec::new();
    for i in 0..4 {
        sockets.push(f.connect_device(&u, "ios", &format!("d{i}")).await);
    }
    let started = Instant::now();
    let seqs = pb::BatchGetConvSeqReq {
        conv_id_list: vec!["single:x-y".into()],
        ..Default::default()
    }
    .encode_to_vec();
    // All sent at once: within every socket's own limit (100/s, burst 100).
    for i in 0..5 {
        for (n, s) in sockets.iter_mut().enumerate() {
            let f = frame(
                pb::ActiveEvent::SyncConvSeq,
                format!("q{n}-{i}"),
                seqs.clone(),
            );
            s.ws.send(f).await.unwrap();
        }
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    for i in 0..5 {
        for (n, s) in sockets.iter_mut().enumerate() {
            let r = s.response(&format!("q{n}-{i}")).await;
            if r.code == SUCCESS {
                ok += 1;
            } else {
                assert_eq!(r.code, RETRY_ERROR, "{r:?}");
                assert!(r.msg.as_deref().unwrap_or("").contains("account"), "{r:?}");
                refused += 1;
            }
        }
    }
    // The burst, and one more a second since the first request.
    let bound = 10 + started.elapsed().as_secs() + 1;
    assert_eq!(ok + refused, 20);
    assert!(ok <= bound, "{ok} of 20 served; the account allows {bound}");
    let mut other = f.connect(&unique("v")).await;
    assert_eq!(seq_req(&mut other).await.code, SUCCESS);
}

/// Requests of one account in flight are bounded over its sockets: with two
/// CustomRequests waiting on a slow upstream, a third on another socket is refused at
/// once, naming the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_requests_in_flight_are_bounded_over_its_sockets() {
    // An upstream that takes connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    let c = Cluster::new(
        Backend::Embedded,
        &format!(
            "[budgets]\naccount_in_flight = 2\n\
             [custom]\ntimeout_ms = 20000\nroutes = {{ \"/v1\" = \"http://{addr}\" }}\n"
        ),
    );
    let f = c.start("pod-a");
    let u = unique("u");
    let call = pb::CustomRequestBody {
        method: "/v1/x".into(),
        data: Vec::new().into(),
    }
    .encode_to_vec();
    let mut s1 = f.connect_device(&u, "ios", "d1").await;
    let mut s2 = f.connect_device(&u, "ios", "d2").await;
    for (i, s) in [&mut s1, &mut s2].into_iter().enumerate() {
        let f = frame(
            pb::ActiveEvent::CustomRequest,
            format!("slow{i}"),
            call.clone(),
        );
        s.ws.send(f).await.unwrap();
    }
    // Both are in flight once the upstream holds their connections.
    let mut s3 = f.connect_device(&u, "web", "d3").await;
    let deadline = Instant::now() + 10 * SEC;
    let r = loop {
        let r = s3
            .try_request(pb::ActiveEvent::CustomRequest, call.clone(), 5 * SEC)
            .await;
        if let Some(r) = r.filter(|r| r.code == RETRY_ERROR) {
            break r;
        }
        assert!(Instant::now() < deadline, "never refused for the account");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        r.msg
            .as_deref()
            .unwrap_or("")
            .contains("this account in flight"),
        "{r:?}"
    );
    // Another account is served meanwhile.
    let mut other = f.connect(&unique("v")).await;
    assert_eq!(seq_req(&mut other).await.code, SUCCESS);
    held.abort();
}

/// Connects per minute are the account's: past `budgets.account_connects_per_minute`
/// a connect is closed 1008 with the wait, whatever its deviceId; another account
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_connects_per_minute_are_bounded() {
    let c = Cluster::new(
        Backend::Embedded,
        "[budgets]\naccount_connects_per_minute = 3\n",
    );
    let f = c.start("pod-a");
    let u = unique("u");
    for i in 0..3 {
        let c = f.connect_device(&u, "ios", &format!("d{i}")).await;
        drop(c);
    }
    match f.attempt(&u, "web", "fresh").await {
        Connect::Closed(code, reason) => {
            assert_eq!(code, 1008, "{reason}");
            assert!(
                reason.contains("too many connects for this account"),
                "{reason}"
            );
            assert!(reason.contains("connect again in"), "{reason}");
        }
        Connect::Connected(_) => panic!("a fourth connect within the minute was let in"),
    }
    f.connect(&unique("v")).await;
}
