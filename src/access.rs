//! Who may write to and read from which conversation.

use crate::domain::{ConvId, UserId};
use crate::store::{Store, StoreError};

/// Whether `user` may send to `conv`: participants of a single conversation and
/// members of a group. Notice conversations are written by the server only.
pub(crate) async fn can_write(
    store: &dyn Store,
    user: &UserId,
    conv: &ConvId,
) -> Result<bool, StoreError> {
    Ok(match conv {
        ConvId::Single(a, b) => a == user || b == user,
        ConvId::Group(g) => store.member(g, user.as_str()).await?.is_some(),
        ConvId::Notice(_) => false,
    })
}

/// The first seq `user` may read in `conv` (0: from the beginning), or None when the
/// user may not read it at all.
pub(crate) async fn read_from(
    store: &dyn Store,
    user: &UserId,
    conv: &ConvId,
) -> Result<Option<u64>, StoreError> {
    Ok(match conv {
        ConvId::Single(a, b) => (a == user || b == user).then_some(0),
        ConvId::Group(g) => store.member(g, user.as_str()).await?,
        ConvId::Notice(_) => None,
    })
}

/// Everyone a message in `conv` is delivered to (the sender included).
pub(crate) async fn recipients(
    store: &dyn Store,
    conv: &ConvId,
) -> Result<Vec<String>, StoreError> {
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
