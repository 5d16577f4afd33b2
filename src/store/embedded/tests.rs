//! The embedded store's own tests.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::store::{ConvState, RowWrite, Store, Writes};

fn row(conv: &str, max_seq: u64) -> Writes {
    Writes {
        rows: vec![RowWrite {
            conv: conv.to_owned(),
            state: ConvState {
                max_seq,
                ..ConvState::default()
            },
            version: 0,
        }],
        ..Writes::default()
    }
}

async fn max_seq(store: &EmbeddedStore, conv: &str) -> u64 {
    store.conv_state(conv).await.unwrap().unwrap().max_seq
}

/// A write with nothing queued and nobody committing commits on the caller's
/// task; one made while a commit is under way waits for the writer thread.
#[tokio::test]
async fn a_lone_write_commits_without_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.write(&row("si_a_b", 1)).await.unwrap();
    assert_eq!(store.inline_commits.load(Ordering::Relaxed), 1);
    assert_eq!(max_seq(&store, "si_a_b").await, 1);

    // Another thread commits (as the writer thread would) until released.
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let lock = store.committing.clone();
    let holder = std::thread::spawn(move || {
        let _held = hold(&lock);
        held_tx.send(()).unwrap();
        let _ = released.recv();
    });
    held.recv().unwrap();
    let other = store.clone();
    let queued = tokio::spawn(async move { other.write(&row("si_a_b", 2)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !queued.is_finished(),
        "a write committed while another commit held the database"
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("the queued write was never committed")
        .unwrap()
        .unwrap();
    assert_eq!(store.inline_commits.load(Ordering::Relaxed), 1);
    assert_eq!(max_seq(&store, "si_a_b").await, 2);
    store.flush().await.unwrap();
}
