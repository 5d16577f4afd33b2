//! The gateway role: WebSocket sessions, authentication, the local connection
//! registry, request dispatch, and CustomRequest upstreams.

pub(crate) mod auth;
pub(crate) mod conformance;
pub(crate) mod custom;
pub(crate) mod dispatch;
pub(crate) mod limits;
pub(crate) mod presence;
pub(crate) mod registry;
pub(crate) mod send;
pub(crate) mod session;
pub(crate) mod sync;
pub(crate) mod wire;
pub(crate) mod ws_close;
