//! Presence, in one place: which pods hold which users' sockets. Gateways publish
//! their local view of each user to the compacted presence topic (keyed `user|pod`)
//! when a socket comes or goes and again before it goes stale (`publish`); every
//! process that routes pushes follows the topic into a map (`view`).

mod publish;
mod view;

pub(crate) use publish::Publisher;
pub(crate) use view::PresenceView;
