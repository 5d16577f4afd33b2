//! This pod's sockets and what is written to them: the local connection registry
//! and push framing. Shared by the gateway (sessions register here) and the roles
//! that deliver to local sockets (pusher, notices), so neither imports the other.

pub(crate) mod budget;
pub(crate) mod frames;
pub(crate) mod outbox;
pub(crate) mod registry;
