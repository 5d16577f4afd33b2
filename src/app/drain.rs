//! Serving until a stop, then the drain: HTTP connections, then sessions, then the
//! roles, then this pod's push topic, all under one deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::msglog::{MsgLog, Topics};
use crate::shutdown::Roles;

/// What the drain needs once serving has stopped.
pub(super) struct Draining {
    pub(super) cfg: Arc<Config>,
    pub(super) log: Arc<dyn MsgLog>,
    pub(super) topics: Topics,
    /// The WebSocket sessions' tasks.
    pub(super) sessions: TaskTracker,
    pub(super) roles: Roles,
    /// The root token: cancelled by a signal, a test, or a failed role.
    pub(super) stop: CancellationToken,
}

/// Accepts connections until the stop token is cancelled or a role fails, then
/// drains everything within `session.shutdown_grace_secs`.
pub(super) async fn serve_then_drain(
    listener: TcpListener,
    router_http: axum::Router,
    d: Draining,
) -> anyhow::Result<()> {
    let Draining {
        cfg,
        log,
        topics,
        sessions,
        roles: tasks,
        stop,
    } = d;
    let grace = Duration::from_secs(cfg.session.shutdown_grace_secs);
    let head = crate::serve::HeadBounds {
        read_timeout: Duration::from_secs(cfg.server.header_read_timeout_secs),
        max_bytes: cfg.server.max_header_bytes,
        max_unconnected: crate::serve::max_unconnected(cfg.server.max_unconnected_sockets),
    };
    let conns = TaskTracker::new();
    let accepting = crate::serve::accept(listener, router_http, head, stop.clone(), conns.clone());
    // A failed role stops the whole process, as a signal would.
    tokio::select! {
        () = accepting => {}
        _ = tasks.failed() => stop.cancel(),
    };
    // The grace period bounds the whole drain: one deadline, fixed when the stop
    // was requested, shared by every step below (each step's own timeout would
    // add up to a multiple of the grace period, past Kubernetes' SIGKILL).
    let deadline = tokio::time::Instant::now() + grace;
    crate::serve::drain(&conns, deadline, "HTTP connections").await;
    // Sessions close with 1012 once the root token is cancelled (the registry's
    // sweep, app/build.rs); what they accepted reaches the log before the roles stop.
    crate::serve::drain(&sessions, deadline, "WebSocket sessions").await;
    // Requests in flight are done (or dropped); now stop the roles, which flush
    // and commit, then remove this pod's push topic.
    let roles_result = tasks.drain(deadline).await;
    let push_topic = topics.push(&cfg.pod);
    match tokio::time::timeout_at(deadline, log.delete_topic(&push_topic)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(topic = %push_topic, error = %e, "push topic not deleted"),
        Err(_) => {
            tracing::warn!(topic = %push_topic, "push topic not deleted by the drain deadline")
        }
    }
    roles_result.map_err(anyhow::Error::from)
}
