//! A store that tells when this process changed a group membership: the server API
//! answers a member change once the sequencer has applied it, and when the
//! sequencer runs in this process the API wakes on the write itself instead of
//! reading the store on a timer.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{ConvState, Store, StoreError, Stored, Writes};
use crate::domain::Message;

/// `inner`, counting the membership writes made through it.
pub(crate) struct Watched {
    inner: Arc<dyn Store>,
    member_writes: watch::Sender<u64>,
}

impl Watched {
    pub(crate) fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            member_writes: watch::Sender::new(0),
        })
    }

    fn member_written(&self) {
        self.member_writes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl Store for Watched {
    fn member_writes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.member_writes.subscribe())
    }

    /// Every membership change goes through `write` (set-up's `set_member` too).
    async fn write(&self, w: &Writes) -> Result<(), StoreError> {
        self.inner.write(w).await?;
        if !w.members.is_empty() {
            self.member_written();
        }
        Ok(())
    }

    async fn conv_state(&self, conv: &str) -> Result<Option<ConvState>, StoreError> {
        self.inner.conv_state(conv).await
    }

    async fn messages(&self, conv: &str, seqs: &[u64]) -> Result<Vec<Message>, StoreError> {
        self.inner.messages(conv, seqs).await
    }

    async fn by_client_msg_id(
        &self,
        conv: &str,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        self.inner
            .by_client_msg_id(conv, sender, client_msg_id)
            .await
    }

    async fn find_client_msg_id(
        &self,
        client_msg_id: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.find_client_msg_id(client_msg_id, limit).await
    }

    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        self.inner.member(group, user).await
    }

    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.inner.members(group).await
    }

    async fn member_uncached(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        self.inner.member_uncached(group, user).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn user_convs(
        &self,
        user: &str,
    ) -> Result<Vec<(String, super::convs::ConvEntry)>, StoreError> {
        self.inner.user_convs(user).await
    }

    fn durability_horizon(&self) -> std::time::Duration {
        self.inner.durability_horizon()
    }

    fn outages(&self) -> u64 {
        self.inner.outages()
    }

    async fn conversations(&self) -> Result<Vec<String>, StoreError> {
        self.inner.conversations().await
    }

    async fn groups(&self) -> Result<Vec<String>, StoreError> {
        self.inner.groups().await
    }

    async fn index_users(&self) -> Result<Vec<String>, StoreError> {
        self.inner.index_users().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn membership_writes_wake_the_watchers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Watched::wrap(Arc::new(
            super::super::embedded::EmbeddedStore::open(dir.path()).unwrap(),
        ));
        let mut writes = store.member_writes().expect("a watched store");
        store.messages("single:a-b", &[1]).await.unwrap();
        assert!(!writes.has_changed().unwrap(), "reads wake nobody");
        store.set_member("g", "u", 3).await.unwrap();
        assert!(writes.has_changed().unwrap());
        writes.mark_unchanged();
        store
            .write(&Writes {
                members: vec![super::super::MemberWrite {
                    group: "g".into(),
                    user: "u".into(),
                    min_seq: None,
                    version: super::super::version(7, super::super::Step::New),
                }],
                ..Writes::default()
            })
            .await
            .unwrap();
        assert!(writes.has_changed().unwrap());
        assert_eq!(store.member("g", "u").await.unwrap(), None);
    }
}
