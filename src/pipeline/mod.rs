//! The roles behind the gateway, each its own file: the sequencer (seqs, storage),
//! the delay tiers, the pusher (this pod's push topic to its sockets), notices, and
//! the router that sends pushes only to the pods that need them; the routing hook
//! deciding where a user's pushes go and who is offline (by presence by default);
//! the offline hand-off for mobile push and the forwarder role posting it onwards.

pub(crate) mod delay;
pub(crate) mod forwarder;
pub(crate) mod handoff;
pub(crate) mod lag;
pub(crate) mod notices;
pub(crate) mod offline_batch;
pub(crate) mod push_split;
pub(crate) mod pusher;
pub(crate) mod records;
pub(crate) mod router;
pub(crate) mod routing;
pub(crate) mod sequencer;
pub(crate) mod stalls;
pub(crate) mod stamping;
