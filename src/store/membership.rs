//! The store answers the access rules' membership questions (`access::Membership`):
//! the rules sit below the backends and never import them.

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::access::Membership;

/// For every `dyn Store`, whatever its lifetime: callers pass `&dyn Store` borrowed
/// from an `Arc`.
#[async_trait]
impl<'s> Membership for dyn Store + 's {
    type Error = StoreError;

    async fn member(&self, group: &str, user: &str) -> Result<Option<u64>, StoreError> {
        Store::member(self, group, user).await
    }

    async fn members(&self, group: &str) -> Result<Vec<(String, u64)>, StoreError> {
        Store::members(self, group).await
    }
}
