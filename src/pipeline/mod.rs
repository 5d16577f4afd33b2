//! The roles behind the gateway, each its own file: the sequencer (seqs, storage),
//! the delay tiers, the pusher (this pod's push topic to its sockets), notices, and
//! the router that sends pushes only to the pods that need them (by presence).

pub(crate) mod delay;
pub(crate) mod lag;
pub(crate) mod notices;
pub(crate) mod pusher;
pub(crate) mod records;
pub(crate) mod router;
pub(crate) mod sequencer;
pub(crate) mod stamping;
