//! Wiring: opens the backends, starts the chosen roles under one shutdown tree,
//! binds the listener, and drains on shutdown. `start` reads as those three steps:
//! `build.rs` opens the backends and assembles the shared handles, `spawn.rs`
//! starts the roles, `drain.rs` serves until stopped and then drains.

mod build;
mod drain;
mod spawn;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::Gateway;

/// The roles one process can play; all of them by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Role {
    /// WebSocket sessions, the server API, notices for local sockets.
    Gateway,
    /// Assigns seqs, stores messages, routes pushes.
    Sequencer,
    /// Moves delayed batches down the delay tiers.
    Delay,
    /// Delivers this pod's push topic to its sockets.
    Pusher,
    /// Posts offline hand-off events to `offline.forwarder.url`; runs by default
    /// when that is set.
    Forwarder,
}

pub(crate) const ALL_ROLES: [Role; 4] = [Role::Gateway, Role::Sequencer, Role::Delay, Role::Pusher];

/// A started process: where it listens, and how to stop it.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) done: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The gateway's handles (for in-process drivers such as the fuzz targets).
    pub(crate) gateway: Gateway,
}

/// Builds the process, starts its roles, binds the listener and returns at once; the
/// returned `done` resolves when a stop (the token, or a failed role) has drained.
pub(crate) async fn start(
    cfg: Config,
    roles: &[Role],
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<Running> {
    let build::Built {
        gateway,
        probe,
        service_token,
    } = build::build(cfg, roles, metrics).await?;
    // Roles stop after the sockets are closed (see shutdown.rs).
    let tasks = spawn::roles(&gateway, &probe.stalls, roles);

    let cfg = gateway.cfg.clone();
    let listen: SocketAddr = cfg
        .server
        .listen
        .parse()
        .with_context(|| format!("server.listen {}", cfg.server.listen))?;
    let listener = crate::serve::bind(listen, cfg.server.listen_backlog)
        .with_context(|| format!("binding server.listen {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    let started = probe.started.clone();
    let shutdown = gateway.shutdown.clone();
    let gateway_out = gateway.clone();
    let draining = drain::Draining {
        cfg: cfg.clone(),
        log: gateway.log.clone(),
        topics: gateway.topics.clone(),
        sessions: gateway.tasks.clone(),
        roles: tasks,
        stop: shutdown.clone(),
    };
    let router_http = crate::http::router(
        probe,
        roles
            .contains(&Role::Gateway)
            .then_some((gateway, service_token)),
    );
    started.store(true, Ordering::SeqCst);
    let done = tokio::spawn(drain::serve_then_drain(listener, router_http, draining));
    Ok(Running {
        addr,
        shutdown,
        done,
        gateway: gateway_out,
    })
}
