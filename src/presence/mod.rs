//! Presence, in one place: which pods hold which users' sockets. Gateways publish
//! their local view of each user to the compacted presence topic (keyed `user|pod`)
//! when a socket comes or goes, and a heartbeat of the pod (keyed `|pod`) that keeps
//! those entries fresh while the process lives (`publish`); every process that
//! routes pushes follows the topic into a map (`view`).

mod publish;
mod view;

pub(crate) use publish::{Publisher, new_incarnation};
pub(crate) use view::PresenceView;
