//! Who may write to and read from which conversation.
//!
//! The rules stand alone: they ask `Membership` who is in a group, which the store
//! implements (`store/membership.rs`), so this module never reaches up into a
//! backend.

use async_trait::async_trait;

use crate::domain::{ConvId, UserId};

/// Who is in a group, as the rules need it.
#[async_trait]
pub(crate) trait Membership: Send + Sync {
    type Error;
    /// The first seq `user` may read in `group`, None when not a member.
    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, Self::Error>;
    /// The members of `group`, each with the first seq it may read.
    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, Self::Error>;
}

/// Whether `user` may send to `conv`: participants of a single conversation and
/// members of a group. Notice conversations are written by the server only.
pub(crate) async fn can_write<M: Membership + ?Sized>(
    store: &M,
    user: &UserId,
    conv: &ConvId,
) -> Result<bool, M::Error> {
    Ok(match conv {
        ConvId::Single(a, b) => a == user || b == user,
        ConvId::Group(g) => store.member(g, user.as_str()).await?.is_some(),
        ConvId::Notice(_) => false,
    })
}

/// The first seq `user` may read in `conv` (0: from the beginning), or None when the
/// user may not read it at all.
pub(crate) async fn read_from<M: Membership + ?Sized>(
    store: &M,
    user: &UserId,
    conv: &ConvId,
) -> Result<Option<u64>, M::Error> {
    Ok(match conv {
        ConvId::Single(a, b) => (a == user || b == user).then_some(0),
        ConvId::Group(g) => store.member(g, user.as_str()).await?,
        ConvId::Notice(_) => None,
    })
}

/// Everyone a message in `conv` is delivered to (the sender included).
pub(crate) async fn recipients<M: Membership + ?Sized>(
    store: &M,
    conv: &ConvId,
) -> Result<Vec<String>, M::Error> {
    Ok(match conv {
        ConvId::Single(a, b) => vec![a.to_string(), b.to_string()],
        ConvId::Group(g) => store
            .members(g)
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .collect(),
        ConvId::Notice(_) => Vec::new(),
    })
}
