//! The gateway role: WebSocket sessions, authentication, socket lifecycle, request
//! dispatch, and CustomRequest upstreams.

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod bounded;
pub(crate) mod conformance;
pub(crate) mod cooldown;
pub(crate) mod custom;
pub(crate) mod delay_quota;
pub(crate) mod discover;
pub(crate) mod discover_page;
pub(crate) mod dispatch;
pub(crate) mod fragments;
pub(crate) mod hygiene;
pub(crate) mod jwks;
pub(crate) mod keepalive;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod meta;
pub(crate) mod origin;
pub(crate) mod pipeline;
pub(crate) mod send;
pub(crate) mod session;
pub(crate) mod sizes;
pub(crate) mod socket_config;
pub(crate) mod sync;
pub(crate) mod sync_read;
pub(crate) mod upgrade;
pub(crate) mod wire;
pub(crate) mod ws_close;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connections::registry::Registry;
use crate::msglog::{MsgLog, Topics};
use crate::pipeline::notices::NoticeBook;
use crate::pipeline::router::PushRouter;
use crate::presence::{PresenceView, Publisher};
use crate::store::Store;

/// The handles sessions, their request handlers and the server API use; cheap to
/// clone. This pod's name is `cfg.pod`.
#[derive(Clone)]
pub(crate) struct Gateway {
    pub(crate) cfg: Arc<Config>,
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) topics: Topics,
    pub(crate) registry: Arc<Registry>,
    pub(crate) presence: Arc<PresenceView>,
    pub(crate) publisher: Publisher,
    pub(crate) router: PushRouter,
    pub(crate) notices: Arc<NoticeBook>,
    pub(crate) auth: Arc<auth::Authenticator>,
    /// Devices closed for flooding, and until when they may not connect again.
    pub(crate) cooldown: Arc<cooldown::Cooldown>,
    /// Delayed messages pending per sender (`limits.max_pending_delayed_per_user`).
    pub(crate) delay_quota: Arc<delay_quota::DelayQuota>,
    /// DiscoverConvs' cached horizon (what the sequencer applied).
    pub(crate) discovery: Arc<discover::Horizon>,
    /// Each account's budgets over its sockets here, and the process's answer bytes.
    pub(crate) accounts: Arc<account::Accounts>,
    /// Client for CustomRequest upstreams.
    pub(crate) http: reqwest::Client,
    /// Cancelled on shutdown: sessions close with 1012 (the registry is swept, see
    /// `app.rs`, and a session registering later checks it).
    pub(crate) shutdown: CancellationToken,
    /// Sessions, their SendMsgList workers and their requests: the drain waits for
    /// them before the roles stop, so what they accepted reaches the log.
    pub(crate) tasks: TaskTracker,
}
