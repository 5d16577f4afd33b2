//! `Store` scenarios, written once against the trait and run on a real CQL node
//! (FERRY_TEST_CQL, default 127.0.0.1:9042; ScyllaDB or Apache Cassandra) and on the
//! embedded store. Each Scylla test migrates a fresh keyspace and drops it after.

use ferry::testkit::EmbeddedStore;
use ferry::testkit::{Claim, ConvState, MemberWrite, RowWrite, Step, Store, Writes, version};
use ferry::testkit::{ConvEntry, ConvIndexWrite, Message, MsgOptions};
use ferry::testkit::{ScyllaSettings, ScyllaStore, StoreError, drop_keyspace, migrate};

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn scylla_settings() -> ScyllaSettings {
    ScyllaSettings {
        nodes: vec![std::env::var("FERRY_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())],
        keyspace: format!("ferry_test_{}", suffix()),
        replication: 1,
        username: None,
        password: None,
    }
}

fn msg(conv: &str, seq: u64, client_msg_id: &str, sender: &str, content: &str) -> Message {
    Message {
        client_msg_id: client_msg_id.into(),
        server_msg_id: format!("{conv}-{seq}"),
        client_time_ms: 1_700_000_000_000,
        server_time_ms: 1_700_000_000_000 + seq as i64,
        sender_id: sender.into(),
        conv_id: conv.into(),
        at_users: vec!["x".into()],
        content_type: 101,
        content: content.to_owned().into(),
        seq,
        options: MsgOptions::stored(),
        ..Message::default()
    }
}

fn state(max_seq: u64, offset: i64, first_seq: u64) -> ConvState {
    ConvState {
        max_seq,
        update_time_ms: 1_700_000_000_000 + max_seq as i64,
        claim: Claim {
            partition: 2,
            offset,
            first_seq,
        },
    }
}

fn row(conv: &str, s: &ConvState, offset: i64, step: Step) -> Writes {
    Writes {
        rows: vec![RowWrite {
            conv: conv.to_owned(),
            state: s.clone(),
            version: version(offset, step),
        }],
        ..Writes::default()
    }
}

fn member(group: &str, user: &str, min_seq: Option<u64>, offset: i64) -> Writes {
    Writes {
        members: vec![MemberWrite {
            group: group.to_owned(),
            user: user.to_owned(),
            min_seq,
            version: version(offset, Step::New),
        }],
        ..Writes::default()
    }
}

/// The seq row round-trips; rows are absent until written.
async fn seq_rows(store: &dyn Store) {
    let conv = format!("single:a{}-b", suffix());
    assert_eq!(store.conv_state(&conv).await.unwrap(), None);
    let s1 = state(3, 10, 1);
    store.write(&row(&conv, &s1, 10, Step::New)).await.unwrap();
    assert_eq!(store.conv_state(&conv).await.unwrap(), Some(s1));
    let s2 = state(5, 11, 4);
    store.write(&row(&conv, &s2, 11, Step::New)).await.unwrap();
    assert_eq!(store.conv_state(&conv).await.unwrap(), Some(s2));
}

/// ScyllaDB keeps each cell's write of the latest record, whatever order the writes
/// arrive in: a zombie's late write of an earlier record loses (the embedded store
/// has one writer that writes in log order, so this is the CQL backend's contract).
async fn latest_record_wins(store: &dyn Store) {
    let conv = format!("single:a{}-b", suffix());
    let (s1, s2) = (state(3, 10, 1), state(5, 11, 4));
    store.write(&row(&conv, &s2, 11, Step::New)).await.unwrap();
    store.write(&row(&conv, &s1, 10, Step::New)).await.unwrap();
    store
        .write(&row(&conv, &s1, 10, Step::Repair))
        .await
        .unwrap();
    assert_eq!(store.conv_state(&conv).await.unwrap(), Some(s2.clone()));
    // A repair of the same record beats that record's own write.
    let s2b = state(5, 11, 3);
    store
        .write(&row(&conv, &s2b, 11, Step::Repair))
        .await
        .unwrap();
    assert_eq!(store.conv_state(&conv).await.unwrap(), Some(s2b));

    // An edit (record 13) rewrote seq 4; the late write of record 12 loses.
    let cmid = format!("cmid-{}", suffix());
    let newer = msg(&conv, 4, &cmid, "a", "newer");
    store
        .put_messages(std::slice::from_ref(&newer), version(13, Step::Original))
        .await
        .unwrap();
    store
        .put_messages(
            &[msg(&conv, 4, &cmid, "a", "older")],
            version(12, Step::New),
        )
        .await
        .unwrap();
    let found = store
        .by_client_msg_id(&conv, "a", &cmid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.msg, found.written_by), (newer, Some(13)));

    // Removed by record 7; the late add of record 6 does not bring the member back.
    let g = format!("g{}", suffix());
    store.write(&member(&g, "bob", Some(1), 5)).await.unwrap();
    store.write(&member(&g, "bob", None, 7)).await.unwrap();
    store.write(&member(&g, "bob", Some(2), 6)).await.unwrap();
    assert_eq!(store.member(&g, "bob").await.unwrap(), None);
    store.write(&member(&g, "bob", Some(3), 8)).await.unwrap();
    assert_eq!(store.member(&g, "bob").await.unwrap(), Some(3));
}

/// Messages round-trip across buckets, answered in the order asked, missing left out.
async fn messages_across_buckets(store: &dyn Store) {
    let conv = format!("group:g{}", suffix());
    let msgs: Vec<Message> = [5, 999, 1000, 1001, 2500]
        .iter()
        .map(|s| msg(&conv, *s, &format!("c{s}"), "u1", "hi"))
        .collect();
    store
        .put_messages(&msgs, version(1, Step::New))
        .await
        .unwrap();
    // Rewriting is an upsert.
    let edited = msg(&conv, 1000, "c1000", "u1", "edited");
    store
        .put_messages(std::slice::from_ref(&edited), version(2, Step::Original))
        .await
        .unwrap();

    let got = store
        .messages(&conv, &[1001, 5, 7, 999, 1000, 2500])
        .await
        .unwrap();
    let want = vec![
        msgs[3].clone(),
        msgs[0].clone(),
        msgs[1].clone(),
        edited,
        msgs[4].clone(),
    ];
    assert_eq!(got, want);
    assert!(store.messages(&conv, &[]).await.unwrap().is_empty());
    assert!(
        store
            .messages("group:nobody", &[1, 2])
            .await
            .unwrap()
            .is_empty()
    );
}

/// The clientMsgId index answers the highest seq, whatever order the writes came in.
async fn client_msg_id_index(store: &dyn Store) {
    let (conv, conv2) = (
        format!("single:a{}-b", suffix()),
        format!("group:g{}", suffix()),
    );
    let cmid = format!("cmid-{}", suffix());
    store
        .put_messages(
            &[msg(&conv, 7, &cmid, "a", "second")],
            version(7, Step::New),
        )
        .await
        .unwrap();
    // An older seq written later (a replay) must not win.
    store
        .put_messages(
            &[msg(&conv, 3, &cmid, "a", "first")],
            version(3, Step::Repair),
        )
        .await
        .unwrap();
    store
        .put_messages(
            &[
                msg(&conv2, 1, &cmid, "c", "elsewhere"),
                msg(&conv2, 2, "", "c", "no id"),
            ],
            version(1, Step::New),
        )
        .await
        .unwrap();

    let latest = store
        .by_client_msg_id(&conv, "a", &cmid)
        .await
        .unwrap()
        .unwrap()
        .msg;
    assert_eq!((latest.seq, &latest.content[..]), (7, &b"second"[..]));
    assert_eq!(
        store.by_client_msg_id(&conv, "b", &cmid).await.unwrap(),
        None
    );
    assert_eq!(
        store.by_client_msg_id(&conv, "a", "nope").await.unwrap(),
        None
    );
    assert_eq!(store.by_client_msg_id(&conv2, "c", "").await.unwrap(), None);

    let mut found: Vec<(String, u64)> = store.find_client_msg_id(&cmid, 10).await.unwrap();
    found.sort();
    let mut want = vec![(conv.clone(), 7), (conv2.clone(), 1)];
    want.sort();
    assert_eq!(found, want);
    // The limit bounds the read.
    assert_eq!(store.find_client_msg_id(&cmid, 1).await.unwrap().len(), 1);
    assert!(store.find_client_msg_id("", 10).await.unwrap().is_empty());
}

async fn group_members(store: &dyn Store) {
    let g = format!("g{}", suffix());
    assert!(store.members(&g).await.unwrap().is_empty());
    store.write(&member(&g, "alice", Some(0), 1)).await.unwrap();
    store.write(&member(&g, "bob", Some(5), 2)).await.unwrap();
    store.write(&member(&g, "bob", Some(7), 3)).await.unwrap();
    assert_eq!(store.member(&g, "bob").await.unwrap(), Some(7));
    assert_eq!(store.member(&g, "carol").await.unwrap(), None);
    let mut all = store.members(&g).await.unwrap();
    all.sort();
    assert_eq!(all, vec![("alice".to_owned(), 0), ("bob".to_owned(), 7)]);
    store.write(&member(&g, "alice", None, 4)).await.unwrap();
    assert_eq!(store.member(&g, "alice").await.unwrap(), None);
    assert_eq!(
        store.members(&g).await.unwrap(),
        vec![("bob".to_owned(), 7)]
    );
    store.ping().await.unwrap();
}

// ---- Scylla / Cassandra ----

/// Migrates a fresh keyspace, runs `f` on a connected store, drops the keyspace.
async fn with_scylla<F: AsyncFnOnce(&ScyllaStore)>(f: F) {
    let settings = scylla_settings();
    migrate(&settings).await.unwrap();
    let store = ScyllaStore::connect(&settings).await.unwrap();
    f(&store).await;
    drop_keyspace(&settings).await.unwrap();
}

#[tokio::test]
async fn scylla_migrate_twice_is_a_no_op() {
    let settings = scylla_settings();
    let first = migrate(&settings).await.unwrap();
    let ks = &settings.keyspace;
    let mut want: Vec<String> = [
        "",
        ".client_msg_ids",
        ".conversations",
        ".group_member_sets",
        ".group_members",
        ".messages",
        ".user_convs",
    ]
    .iter()
    .map(|t| format!("{ks}{t}"))
    .collect();
    want.sort();
    assert_eq!(first.created, want);
    let second = migrate(&settings).await.unwrap();
    assert!(second.created.is_empty(), "{second:?}");
    assert_eq!(second.statements, first.statements);
    ScyllaStore::connect(&settings)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    drop_keyspace(&settings).await.unwrap();
}

/// The name is refused before any CQL is sent: the node address is one nothing
/// listens on, so only the name check (not a connection error) can produce the
/// invalid-name error for each of these.
#[tokio::test]
async fn scylla_rejects_bad_keyspace_names() {
    for bad in [
        "x; DROP KEYSPACE system",
        "9lives",
        "",
        "k".repeat(49).as_str(),
    ] {
        let settings = ScyllaSettings {
            nodes: vec!["127.0.0.1:1".into()],
            keyspace: bad.to_owned(),
            ..scylla_settings()
        };
        match migrate(&settings).await {
            Err(StoreError::Unavailable(m)) if m.contains("invalid keyspace name") => {}
            other => panic!("{bad:?}: {:?}", other.map(|r| r.keyspace)),
        }
        match ScyllaStore::connect(&settings).await {
            Err(StoreError::Unavailable(m)) if m.contains("invalid keyspace name") => {}
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?}: connected"),
        }
    }
}

#[tokio::test]
async fn scylla_seq_rows() {
    with_scylla(async |s| seq_rows(s).await).await;
}

#[tokio::test]
async fn scylla_latest_record_wins() {
    with_scylla(async |s| latest_record_wins(s).await).await;
}

#[tokio::test]
async fn scylla_messages_across_buckets() {
    with_scylla(async |s| messages_across_buckets(s).await).await;
}

#[tokio::test]
async fn scylla_client_msg_id_index() {
    with_scylla(async |s| client_msg_id_index(s).await).await;
}

#[tokio::test]
async fn scylla_group_members() {
    with_scylla(async |s| group_members(s).await).await;
}

/// The conversation index: one entry per (user, conversation), read back per user
/// whole; a later record's entry replaces an earlier one's.
async fn conv_index(store: &dyn Store) {
    let (u, other) = (format!("u{}", suffix()), format!("v{}", suffix()));
    let entry = |offset: i64, max_seq: u64, removed: bool| ConvEntry {
        partition: 3,
        offset,
        min_seq: if removed { 0 } else { 2 },
        max_seq,
        update_time_ms: 1_700_000_000_000 + offset,
        removed,
    };
    let put = |user: &str, conv: &str, e: ConvEntry, step: Step| Writes {
        convs: vec![ConvIndexWrite {
            user: user.to_owned(),
            conv: conv.to_owned(),
            version: version(e.offset, step),
            entry: e,
        }],
        ..Writes::default()
    };
    assert!(store.user_convs(&u).await.unwrap().is_empty());
    store
        .write(&put(&u, "single:a-b", entry(5, 1, false), Step::New))
        .await
        .unwrap();
    store
        .write(&put(&u, "group:g", entry(6, 0, false), Step::New))
        .await
        .unwrap();
    store
        .write(&put(&other, "single:a-b", entry(5, 1, false), Step::New))
        .await
        .unwrap();
    store
        .write(&put(&u, "single:a-b", entry(9, 2, false), Step::New))
        .await
        .unwrap();
    store
        .write(&put(&u, "group:g", entry(10, 0, true), Step::New))
        .await
        .unwrap();
    let mut got = store.user_convs(&u).await.unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("group:g".to_owned(), entry(10, 0, true)),
            ("single:a-b".to_owned(), entry(9, 2, false)),
        ]
    );
    assert!(store.index_users().await.unwrap().contains(&u));
}

/// On CQL every index cell carries its record's version: a zombie's late write of
/// an earlier record loses (the embedded store has one writer, in log order).
async fn conv_index_latest_record_wins(store: &dyn Store) {
    let u = format!("u{}", suffix());
    let e = |offset: i64| ConvEntry {
        partition: 0,
        offset,
        max_seq: offset as u64,
        ..ConvEntry::default()
    };
    for offset in [9, 5] {
        store
            .write(&Writes {
                convs: vec![ConvIndexWrite {
                    user: u.clone(),
                    conv: "single:a-b".into(),
                    entry: e(offset),
                    version: version(offset, Step::New),
                }],
                ..Writes::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(
        store.user_convs(&u).await.unwrap(),
        [("single:a-b".to_owned(), e(9))]
    );
}

#[tokio::test]
async fn scylla_conv_index() {
    with_scylla(async |s| {
        conv_index(s).await;
        conv_index_latest_record_wins(s).await;
    })
    .await;
}

// ---- the embedded twin, for parity ----

#[tokio::test]
async fn embedded_store_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    seq_rows(&store).await;
    messages_across_buckets(&store).await;
    client_msg_id_index(&store).await;
    group_members(&store).await;
    conv_index(&store).await;
}
