//! Conversation discovery (DiscoverConvs, docs/conversation-discovery.md): a
//! conversation that started while a user was offline, and a group they were added
//! to meanwhile, are found after they reconnect, through the protocol and through
//! `ferry client convs`; paging across a change neither skips nor repeats; a removed
//! group comes back as removed; bad cursors and limits are refused with a reason.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;

use crate::proto::pb;
use crate::proto::pb::discover_convs_resp::Conv;
use crate::support::*;

const WITHIN: Duration = Duration::from_secs(30);

pub(crate) fn single(a: &str, b: &str) -> String {
    if a < b {
        format!("single:{a}-{b}")
    } else {
        format!("single:{b}-{a}")
    }
}

/// One DiscoverConvs answer.
pub(crate) async fn discover(c: &mut Client, cursor: &str, limit: i32) -> pb::DiscoverConvsResp {
    let req = pb::DiscoverConvsReq {
        cursor: cursor.to_owned(),
        limit,
        ..Default::default()
    };
    let r = c
        .request(pb::ActiveEvent::DiscoverConvs, req.encode_to_vec())
        .await;
    r.ok();
    let page: pb::DiscoverConvsResp = r.decode();
    assert!(!page.cursor.is_empty(), "an answer always has a cursor");
    page
}

/// Pages from `cursor` until nothing more is ready: what was listed, in order, and
/// the cursor after it.
pub(crate) async fn discover_all(
    c: &mut Client,
    mut cursor: String,
    limit: i32,
) -> (Vec<Conv>, String) {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let page = discover(c, &cursor, limit).await;
        let bound = if limit == 0 { 100 } else { limit as usize };
        assert!(page.convs.len() <= bound, "{} > {bound}", page.convs.len());
        all.extend(page.convs);
        cursor = page.cursor;
        if !page.more {
            return (all, cursor);
        }
    }
    panic!("more than 1000 pages");
}

/// Pages from `cursor` (again and again, from where it got) until `done` says what
/// was listed so far is complete; everything listed, and the last cursor.
async fn discover_until(
    c: &mut Client,
    cursor: String,
    limit: i32,
    done: impl Fn(&[Conv]) -> bool,
) -> (Vec<Conv>, String) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    let (mut all, mut cursor) = (Vec::new(), cursor);
    loop {
        let (got, next) = discover_all(c, cursor, limit).await;
        all.extend(got);
        cursor = next;
        if done(&all) {
            return (all, cursor);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not discovered within {WITHIN:?}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `conv` is sequenced up to `max_seq`, as `c` reads it.
async fn max_seq_reaches(c: &mut Client, conv: &str, max_seq: &str) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while c.conv_seq(conv).await.max_seq != max_seq {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{conv} not at seq {max_seq} within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_conv(convs: &[Conv]) -> BTreeMap<String, Vec<Conv>> {
    let mut m: BTreeMap<String, Vec<Conv>> = BTreeMap::new();
    for c in convs {
        m.entry(c.conv_id.clone()).or_default().push(c.clone());
    }
    m
}

/// Carol's first message to an offline bob, and a group bob was added to while
/// offline, are both discovered after he reconnects (protocol and CLI); what he
/// already knew is not listed again.
async fn offline_conversations_are_discovered(backend: Backend) {
    let c = Cluster::new(backend, "");
    let f = c.start("pod-a");
    let (bob, carol, alice, dave) = (
        unique("bob"),
        unique("carol"),
        unique("alice"),
        unique("dave"),
    );
    let group = unique("g");
    let group_conv = format!("group:{group}");
    // Bob knows one conversation (with dave) before he goes offline.
    let mut d = f.connect(&dave).await;
    d.send_text(&single(&bob, &dave), "hello bob").await.ok();
    let mut b = f.connect(&bob).await;
    let (known, cursor) = discover_until(&mut b, String::new(), 0, |all| !all.is_empty()).await;
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].conv_id, single(&bob, &dave));
    assert_eq!(
        (known[0].min_seq.as_str(), known[0].max_seq.as_str()),
        ("0", "1")
    );
    drop(b);

    // While bob is offline: carol writes to him for the first time; alice, in a
    // group with one message, adds him and writes again.
    let mut cl = f.connect(&carol).await;
    cl.send_text(&single(&bob, &carol), "first words")
        .await
        .ok();
    f.add_member(&group, &alice).await;
    let mut a = f.connect(&alice).await;
    a.send_text(&group_conv, "before bob").await.ok();
    // Sequenced before bob is added, so he joins at seq 2.
    max_seq_reaches(&mut a, &group_conv, "1").await;
    f.add_member(&group, &bob).await;
    a.send_text(&group_conv, "bob is here").await.ok();

    let mut b = f.connect(&bob).await;
    let want_group = |all: &[Conv]| {
        all.iter()
            .any(|c| c.conv_id == group_conv && c.max_seq == "2")
    };
    let (found, after) = discover_until(&mut b, cursor.clone(), 0, |all| {
        all.iter().any(|c| c.conv_id == single(&bob, &carol)) && want_group(all)
    })
    .await;
    let found = by_conv(&found);
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        {
            let mut k = vec![single(&bob, &carol), group_conv.clone()];
            k.sort();
            k
        },
        "the conversation bob knew is not listed again: {found:?}"
    );
    let s = &found[&single(&bob, &carol)];
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0].min_seq.as_str(), s[0].max_seq.as_str(), s[0].removed),
        ("0", "1", false)
    );
    assert!(s[0].update_time.parse::<i64>().unwrap() > 0);
    // Listed at most twice (added, then its message), the last with both seqs.
    let g = found[&group_conv].last().unwrap();
    assert_eq!(
        (g.min_seq.as_str(), g.max_seq.as_str(), g.removed),
        ("2", "2", false)
    );
    // What he may read is what the listing says.
    let msgs = b.sync(&group_conv, &[1, 2]).await;
    assert_eq!(msgs.iter().map(text).collect::<Vec<_>>(), ["bob is here"]);
    let msgs = b.sync(&single(&bob, &carol), &[1]).await;
    assert_eq!(msgs.iter().map(text).collect::<Vec<_>>(), ["first words"]);
    // Nothing changed since: nothing listed.
    let (again, _) = discover_all(&mut b, after.clone(), 0).await;
    assert!(again.is_empty(), "{again:?}");

    // `ferry client convs bob --since CURSOR`: one JSON line per conversation, the
    // next cursor last.
    let out = c
        .ferry(
            &[
                "client",
                "convs",
                &bob,
                "--since",
                &cursor,
                "--url",
                &f.ws_url(),
            ],
            "pod-a",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let (last, convs) = lines.split_last().unwrap();
    assert!(
        last["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "{last}"
    );
    let mut ids: Vec<&str> = convs
        .iter()
        .map(|l| l["convId"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    let mut want = vec![single(&bob, &carol), group_conv.clone()];
    want.sort();
    assert_eq!(ids, want, "{lines:?}");
    let carol_line = convs
        .iter()
        .find(|l| l["convId"] == single(&bob, &carol))
        .unwrap();
    assert_eq!(carol_line["minSeq"], "0");
    assert_eq!(carol_line["maxSeq"], "1");
    assert!(
        carol_line["updateTime"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
}
on_both!(offline_conversations_are_discovered);

/// Seven conversations paged three at a time while two of them change: one already
/// listed (listed again, with its new maxSeq), one not yet listed (listed once, with
/// its new maxSeq); every other exactly once.
async fn paging_across_a_change_neither_skips_nor_repeats(backend: Backend) {
    let c = Cluster::new(backend, "");
    let f = c.start("pod-a");
    let bob = unique("bob");
    let mut peers = Vec::new();
    for i in 0..7 {
        let p = unique(&format!("p{i}x"));
        let mut pc = f.connect(&p).await;
        pc.send_text(&single(&bob, &p), "one").await.ok();
        peers.push((p, pc));
    }
    let mut b = f.connect(&bob).await;
    // All seven discoverable (read without keeping the cursor).
    discover_until(&mut b, String::new(), 100, |all| all.len() == 7).await;

    let first = discover(&mut b, "", 3).await;
    assert_eq!(first.convs.len(), 3);
    assert!(first.more);
    let listed = first.convs[0].conv_id.clone();
    let unlisted = peers
        .iter()
        .map(|(p, _)| single(&bob, p))
        .find(|conv| !first.convs.iter().any(|c| &c.conv_id == conv))
        .unwrap();
    for conv in [&listed, &unlisted] {
        let (_, pc) = peers
            .iter_mut()
            .find(|(p, _)| &single(&bob, p) == conv)
            .unwrap();
        pc.send_text(conv, "two").await.ok();
        // Applied before paging goes on (it may become discoverable later).
        max_seq_reaches(pc, conv, "2").await;
    }
    let (rest, _) = discover_until(&mut b, first.cursor.clone(), 3, |all| {
        all.iter().filter(|c| c.max_seq == "2").count() == 2
    })
    .await;
    let mut all = first.convs.clone();
    all.extend(rest);
    let seen = by_conv(&all);
    assert_eq!(seen.len(), 7, "no conversation skipped: {all:?}");
    for (conv, entries) in &seen {
        let seqs: Vec<&str> = entries.iter().map(|e| e.max_seq.as_str()).collect();
        if conv == &listed {
            assert_eq!(seqs, ["1", "2"], "listed, changed, listed again");
        } else if conv == &unlisted {
            assert_eq!(seqs, ["2"], "changed before it was listed: listed once");
        } else {
            assert_eq!(seqs, ["1"], "{conv} listed exactly once");
        }
    }
}
on_both!(paging_across_a_change_neither_skips_nor_repeats);

/// A member removed from a group sees it once more, as removed; added again, it is
/// listed as a member with the new minSeq.
async fn a_removed_group_comes_back_as_removed(backend: Backend) {
    let c = Cluster::new(backend, "");
    let f = c.start("pod-a");
    let (bob, alice) = (unique("bob"), unique("alice"));
    let group = unique("g");
    let conv = format!("group:{group}");
    f.add_member(&group, &alice).await;
    f.add_member(&group, &bob).await;
    let mut a = f.connect(&alice).await;
    a.send_text(&conv, "hi all").await.ok();
    let mut b = f.connect(&bob).await;
    let (found, cursor) = discover_until(&mut b, String::new(), 0, |all| {
        all.iter().any(|c| c.conv_id == conv && c.max_seq == "1")
    })
    .await;
    assert!(found.iter().all(|c| !c.removed), "{found:?}");

    let (s, body) = f
        .api(
            reqwest::Method::DELETE,
            &format!("/groups/{group}/members/{bob}"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let (found, cursor) =
        discover_until(&mut b, cursor, 0, |all| all.iter().any(|c| c.removed)).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let g = &found[0];
    assert_eq!(
        (
            g.conv_id.as_str(),
            g.min_seq.as_str(),
            g.max_seq.as_str(),
            g.removed
        ),
        (conv.as_str(), "0", "0", true)
    );
    // Later messages do not bring a removed group back: once alice can discover
    // the message, bob still discovers nothing.
    a.send_text(&conv, "bob is gone").await.ok();
    discover_until(&mut a, String::new(), 0, |all| {
        all.iter().any(|c| c.conv_id == conv && c.max_seq == "2")
    })
    .await;
    let (found, cursor) = discover_all(&mut b, cursor, 0).await;
    assert!(found.is_empty(), "{found:?}");

    f.add_member(&group, &bob).await;
    let (found, _) = discover_until(&mut b, cursor, 0, |all| all.iter().any(|c| !c.removed)).await;
    let g = found.last().unwrap();
    assert_eq!(
        (g.min_seq.as_str(), g.max_seq.as_str(), g.removed),
        ("3", "2", false)
    );
}
on_both!(a_removed_group_comes_back_as_removed);

/// Limits and cursors a client controls are refused with a reason, before any read.
async fn bad_cursors_and_limits_are_refused(backend: Backend) {
    let c = Cluster::new(backend, "");
    let f = c.start("pod-a");
    let mut b = f.connect(&unique("bob")).await;
    let ask = |cursor: &str, limit: i32| {
        pb::DiscoverConvsReq {
            cursor: cursor.to_owned(),
            limit,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let long = format!("d1{}", ".0".repeat(9000));
    for (cursor, limit, why) in [
        ("", 101, "limit must be 0..=100"),
        ("", -1, "limit must be 0..=100"),
        (
            "nonsense",
            0,
            "invalid cursor: not a cursor from a DiscoverConvs answer",
        ),
        (
            "d1.-4",
            0,
            "invalid cursor: not a cursor from a DiscoverConvs answer",
        ),
        (long.as_str(), 0, "invalid cursor: longer than 16384 bytes"),
    ] {
        let r = b
            .request(pb::ActiveEvent::DiscoverConvs, ask(cursor, limit))
            .await;
        assert_eq!(
            r.code,
            pb::response_body::Code::RequestError as i32,
            "{why}"
        );
        assert_eq!(r.msg.as_deref(), Some(why));
    }
    let r = b
        .request(pb::ActiveEvent::DiscoverConvs, vec![0xff, 0xff])
        .await;
    assert_eq!(r.code, pb::response_body::Code::RequestError as i32);
    assert!(r.msg.unwrap().starts_with("malformed DiscoverConvsReq"));
    // The socket is still fine.
    let page = discover(&mut b, "", 100).await;
    assert!(page.convs.is_empty() && !page.more);
}
on_both!(bad_cursors_and_limits_are_refused);
