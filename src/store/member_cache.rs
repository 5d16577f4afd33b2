//! Group members cached in memory, so that a group message does not read the member
//! list every time (the sequencer's recipients, the gateway's check that a sender
//! may write).
//!
//! What is cached: a group's member list, and point answers "user is a member from
//! min_seq". A membership write made through this handle (the sequencer of this
//! process applying a member change, which it does in log order with the group's
//! messages) forgets the group before the write returns, and any answer read while a
//! write was under way is not kept. A change applied by another process (the group's
//! partition is owned elsewhere) is seen once the entry is older than
//! `store.member_cache_ttl_ms`: that bounds how long a removed member may still send
//! through this process, or be pushed to after a rebalance moved the group here.
//! "Not a member" is never cached on its own, so a member just added elsewhere is
//! never refused for longer than a store read takes to see it.
//!
//! Bounded: at most `store.member_cache_entries` members (lists and point answers
//! together); past it the least recently used groups are forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{ConvState, Store, StoreError, Stored, Writes};
use crate::domain::Message;

pub(crate) struct MemberCache {
    inner: Arc<dyn Store>,
    ttl: Duration,
    max_entries: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    groups: HashMap<String, Entry>,
    /// Members held, lists and point answers together.
    held: usize,
    /// Bumped by every membership write through this handle: an answer read across
    /// one is not kept (it may predate the write).
    writes: u64,
    /// Logical clock of use, for eviction.
    tick: u64,
}

/// A group's members (user, min_seq), sorted by user.
type List = Arc<Vec<(String, u64)>>;

struct Entry {
    /// The whole list and when it was read.
    list: Option<(List, Instant)>,
    /// Members found one at a time, and when.
    points: HashMap<String, (u64, Instant)>,
    used: u64,
}

impl Entry {
    fn cost(&self) -> usize {
        1 + self.list.as_ref().map_or(0, |(l, _)| l.len()) + self.points.len()
    }
}

impl MemberCache {
    pub(crate) fn wrap(inner: Arc<dyn Store>, ttl: Duration, max_entries: usize) -> Arc<dyn Store> {
        Arc::new(Self {
            inner,
            ttl,
            max_entries,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("member cache lock")
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// Keeps what was read since `writes_before`, unless a membership write happened
    /// meanwhile; then makes room.
    fn keep(&self, group: &str, writes_before: u64, put: impl FnOnce(&mut Entry)) {
        let mut s = self.lock();
        if s.writes != writes_before {
            return;
        }
        s.tick += 1;
        let tick = s.tick;
        let known = s.groups.contains_key(group);
        let e = s.groups.entry(group.to_owned()).or_insert_with(|| Entry {
            list: None,
            points: HashMap::new(),
            used: tick,
        });
        let before = if known { e.cost() } else { 0 };
        put(e);
        e.used = tick;
        let after = e.cost();
        s.held = s.held + after - before;
        if s.held > self.max_entries {
            evict(&mut s, self.max_entries * 3 / 4);
        }
    }

    fn forget(&self, w: &Writes) {
        let mut s = self.lock();
        s.writes += 1;
        for m in &w.members {
            if let Some(e) = s.groups.remove(&m.group) {
                s.held -= e.cost();
            }
        }
    }

    /// The cached answer for (group, user): Some(Some(min)) a member, Some(None) not
    /// a member per a fresh list (read again before refusing), None unknown.
    fn cached_member(&self, group: &str, user: &str) -> Option<Option<u64>> {
        let mut s = self.lock();
        s.tick += 1;
        let tick = s.tick;
        let e = s.groups.get_mut(group)?;
        e.used = tick;
        if let Some((list, at)) = &e.list
            && self.fresh(*at)
        {
            let found = list
                .binary_search_by(|(u, _)| u.as_str().cmp(user))
                .ok()
                .map(|i| list[i].1);
            return Some(found);
        }
        match e.points.get(user) {
            Some((min, at)) if self.fresh(*at) => Some(Some(*min)),
            _ => None,
        }
    }
}

/// Forgets the least recently used groups until at most `target` members are held.
fn evict(s: &mut State, target: usize) {
    let mut by_use: Vec<(u64, String)> =
        s.groups.iter().map(|(g, e)| (e.used, g.clone())).collect();
    by_use.sort_unstable();
    for (_, g) in by_use {
        if s.held <= target {
            break;
        }
        if let Some(e) = s.groups.remove(&g) {
            s.held -= e.cost();
        }
    }
}

#[async_trait]
impl Store for MemberCache {
    async fn write(&self, w: &Writes) -> Result<(), StoreError> {
        if w.members.is_empty() {
            return self.inner.write(w).await;
        }
        // Forgotten before (no answer read during the write is kept) and after (none
        // read before it is served).
        self.forget(w);
        let res = self.inner.write(w).await;
        self.forget(w);
        res
    }

    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        if let Some(Some(min)) = self.cached_member(group, user) {
            return Ok(Some(min));
        }
        let writes_before = self.lock().writes;
        let found = self.inner.member(group, user).await?;
        if let Some(min) = found {
            self.keep(group, writes_before, |e| {
                e.points.insert(user.to_owned(), (min, Instant::now()));
            });
        }
        Ok(found)
    }

    async fn member_uncached(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        self.inner.member_uncached(group, user).await
    }

    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError> {
        {
            let mut s = self.lock();
            s.tick += 1;
            let tick = s.tick;
            if let Some(e) = s.groups.get_mut(group)
                && let Some((list, at)) = &e.list
                && self.fresh(*at)
            {
                e.used = tick;
                return Ok(list.as_ref().clone());
            }
        }
        let writes_before = self.lock().writes;
        let mut list = self.inner.members(group).await?;
        list.sort();
        // A list larger than half the budget would evict everything else: not kept.
        if list.len() <= self.max_entries / 2 {
            let kept = Arc::new(list.clone());
            self.keep(group, writes_before, |e| {
                e.points.clear();
                e.list = Some((kept, Instant::now()));
            });
        }
        Ok(list)
    }

    fn member_writes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.inner.member_writes()
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

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn conversations(&self) -> Result<Vec<String>, StoreError> {
        self.inner.conversations().await
    }

    async fn groups(&self) -> Result<Vec<String>, StoreError> {
        self.inner.groups().await
    }

    async fn user_convs(
        &self,
        user: &str,
    ) -> Result<Vec<(String, super::convs::ConvEntry)>, StoreError> {
        self.inner.user_convs(user).await
    }

    async fn index_users(&self) -> Result<Vec<String>, StoreError> {
        self.inner.index_users().await
    }

    fn durability_horizon(&self) -> std::time::Duration {
        self.inner.durability_horizon()
    }

    fn outages(&self) -> u64 {
        self.inner.outages()
    }
}

#[cfg(test)]
mod tests {
    use super::super::embedded::EmbeddedStore;
    use super::super::{MemberWrite, Step, version};
    use super::*;

    fn change(user: &str, min_seq: Option<u64>, offset: i64) -> Writes {
        Writes {
            members: vec![MemberWrite {
                group: "g".into(),
                user: user.into(),
                min_seq,
                version: version(offset, Step::New),
            }],
            ..Writes::default()
        }
    }

    fn names(list: Vec<(String, u64)>) -> Vec<String> {
        list.into_iter().map(|(u, _)| u).collect()
    }

    #[tokio::test]
    async fn serves_lists_from_memory_and_forgets_on_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cache = MemberCache::wrap(inner.clone(), Duration::from_secs(3600), 100);
        cache.write(&change("a", Some(0), 1)).await.unwrap();
        assert_eq!(names(cache.members("g").await.unwrap()), ["a"]);
        // Written behind the cache's back (another process): not read again.
        inner.write(&change("b", Some(0), 2)).await.unwrap();
        assert_eq!(names(cache.members("g").await.unwrap()), ["a"]);
        assert_eq!(cache.member("g", "a").await.unwrap(), Some(0));
        // "Not a member" per the cached list is read again: b is found.
        assert_eq!(cache.member("g", "b").await.unwrap(), Some(0));
        assert_eq!(cache.member_uncached("g", "b").await.unwrap(), Some(0));
        // A write through the cache forgets the group.
        cache.write(&change("a", None, 3)).await.unwrap();
        assert_eq!(names(cache.members("g").await.unwrap()), ["b"]);
        assert_eq!(cache.member("g", "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn entries_expire_and_the_budget_holds() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let cache = MemberCache::wrap(inner.clone(), Duration::ZERO, 100);
        cache.write(&change("a", Some(0), 1)).await.unwrap();
        assert_eq!(names(cache.members("g").await.unwrap()), ["a"]);
        inner.write(&change("b", Some(0), 2)).await.unwrap();
        assert_eq!(
            names(cache.members("g").await.unwrap()),
            ["a", "b"],
            "ttl 0: always read"
        );

        let c = MemberCache {
            inner,
            ttl: Duration::from_secs(3600),
            max_entries: 10,
            state: Mutex::default(),
        };
        for g in 0..20 {
            c.keep(&format!("g{g}"), 0, |e| {
                e.points.insert("u".into(), (0, Instant::now()));
            });
            assert!(c.lock().held <= 10);
        }
        // The most recently used group is kept.
        assert!(c.lock().groups.contains_key("g19"));
    }
}
