//! Wiring: opens the backends, starts the chosen roles under one shutdown tree,
//! binds the listener, and drains on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connections::registry::Registry;
use crate::gateway::Gateway;
use crate::gateway::auth::Authenticator;
use crate::http::Probe;
use crate::msglog::Topics;
use crate::pipeline::delay::DelayRole;
use crate::pipeline::notices::{NoticeBook, NoticeRole};
use crate::pipeline::pusher::Pusher;
use crate::pipeline::router::PushRouter;
use crate::pipeline::routing::PresenceRouting;
use crate::pipeline::sequencer::Sequencer;
use crate::presence::{PresenceView, Publisher};
use crate::shutdown::Roles;

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

pub(crate) async fn start(
    cfg: Config,
    roles: &[Role],
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<Running> {
    if roles.contains(&Role::Forwarder) && cfg.offline.forwarder.url.is_none() {
        anyhow::bail!("the forwarder role needs offline.forwarder.url (the push service endpoint)");
    }
    let mut cfg = cfg;
    cfg.limits.max_connections = crate::serve::max_connections(cfg.limits.max_connections);
    let cfg = Arc::new(cfg);
    let dev = crate::secrets::auth_dev_secret(&cfg)?;
    let auth = Arc::new(Authenticator::new(&cfg.auth, dev.as_deref())?);
    let service_token: Arc<str> = crate::secrets::service_token(&cfg)?.into();
    let log = crate::backends::open_log(&cfg)
        .await
        .context("opening the log")?;
    let store = crate::backends::open_store(&cfg)
        .await
        .context("opening the store")?;
    // Group members cached for sends and fan-out (store/member_cache.rs); the API's
    // member changes wake on the sequencer's writes (api/groups.rs).
    let store = crate::store::member_cache::MemberCache::wrap(
        store,
        Duration::from_millis(cfg.store.member_cache_ttl_ms),
        cfg.store.member_cache_entries,
    );
    let store = crate::store::watched::Watched::wrap(store);
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    for spec in crate::backends::topic_specs(&cfg, &topics) {
        log.ensure_topic(&spec)
            .await
            .with_context(|| format!("creating topic {}", spec.name))?;
    }
    let registry = Registry::new();
    let presence = PresenceView::new(cfg.pipeline.presence_ttl_secs);
    let local = roles
        .contains(&Role::Gateway)
        .then(|| (cfg.pod.clone(), registry.clone()));
    // The routing hook (pipeline/routing.rs): a deployment with its own placement
    // passes its implementation here.
    let router = PushRouter {
        log: log.clone(),
        routing: Arc::new(PresenceRouting {
            topics: topics.clone(),
            presence: presence.clone(),
            local,
        }),
        group: cfg.pipeline.group_pushes,
        max_record: crate::budget::Budget::of(&cfg).push_max(),
    };
    let shutdown = CancellationToken::new();
    let publisher = Publisher {
        log: log.clone(),
        topics: topics.clone(),
        pod: cfg.pod.clone(),
        incarnation: crate::presence::new_incarnation(),
        registry: registry.clone(),
        failed: Arc::default(),
    };
    let gateway = Gateway {
        cfg: cfg.clone(),
        log: log.clone(),
        store: store.clone(),
        topics: topics.clone(),
        registry: registry.clone(),
        presence: presence.clone(),
        publisher: publisher.clone(),
        router: router.clone(),
        notices: NoticeBook::new(cfg.limits.notices.clone()),
        auth,
        cooldown: Arc::new(crate::gateway::cooldown::Cooldown::new(
            Duration::from_secs(cfg.limits.flood_cooldown_secs),
        )),
        delay_quota: Arc::new(crate::gateway::delay_quota::DelayQuota::new(
            cfg.limits.max_pending_delayed_per_user,
        )),
        discovery: Arc::default(),
        accounts: Arc::new(crate::gateway::account::Accounts::new(&cfg.budgets)),
        // Never follows redirects (src/outbound.rs): shared with the forwarder.
        http: crate::outbound::client()?,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
    };
    // Shutdown closes every registered socket (1012); a session that registers
    // later sees the token cancelled and closes itself.
    tokio::spawn({
        let (registry, stop) = (registry.clone(), shutdown.clone());
        async move {
            stop.cancelled().await;
            registry.shut_down();
        }
    });
    let stalls = crate::pipeline::stalls::Stalls::default();
    let probe = Probe {
        log: log.clone(),
        store: store.clone(),
        registry: registry.clone(),
        started: Arc::new(AtomicBool::new(false)),
        shutdown: shutdown.clone(),
        metrics,
        stalls: stalls.clone(),
        stuck: Duration::from_secs(cfg.pipeline.stuck_lane_secs),
    };

    // Roles stop after the sockets are closed (see shutdown.rs).
    let tasks = Roles::new();
    tasks.spawn("presence", |stop| {
        presence.clone().follow(log.clone(), topics.clone(), stop)
    });
    if roles.contains(&Role::Sequencer) {
        let s = Sequencer {
            log: log.clone(),
            store: store.clone(),
            topics: topics.clone(),
            router: router.clone(),
            offline: cfg.offline.enabled,
            stalls: stalls.clone(),
            budget: crate::budget::Budget::of(&cfg),
        };
        tasks.spawn("sequencer", |stop| s.run(stop));
    }
    if roles.contains(&Role::Delay) {
        let d = DelayRole {
            log: log.clone(),
            topics: topics.clone(),
            tiers: cfg.pipeline.delay_tiers_secs.clone(),
        };
        tasks.spawn("delay", |stop| d.run(stop));
    }
    if roles.contains(&Role::Sequencer) || roles.contains(&Role::Delay) {
        let l = crate::pipeline::lag::LagRole {
            log: log.clone(),
            topics: topics.clone(),
            tiers: cfg.pipeline.delay_tiers_secs.clone(),
            every: Duration::from_secs(15),
        };
        tasks.spawn("lag", |stop| l.run(stop));
    }
    if roles.contains(&Role::Pusher) {
        let p = Pusher {
            log: log.clone(),
            topics: topics.clone(),
            pod: cfg.pod.clone(),
            registry: registry.clone(),
        };
        tasks.spawn("pusher", |stop| p.run(stop));
    }
    if roles.contains(&Role::Forwarder)
        && let Some(url) = cfg.offline.forwarder.url.clone()
    {
        let f = crate::pipeline::forwarder::Forwarder {
            log: log.clone(),
            topics: topics.clone(),
            cfg: cfg.offline.forwarder.clone(),
            url,
            http: gateway.http.clone(),
            max_record: crate::budget::Budget::of(&cfg).record_max(),
        };
        tasks.spawn("forwarder", |stop| f.run(stop));
    }
    if roles.contains(&Role::Gateway) {
        let n = NoticeRole {
            log: log.clone(),
            topics: topics.clone(),
            book: gateway.notices.clone(),
            registry: registry.clone(),
            interval: Duration::from_secs(cfg.pipeline.notice_repush_secs),
        };
        tasks.spawn("notices", |stop| n.run(stop));
        let ttl = cfg.pipeline.presence_ttl_secs;
        tasks.spawn("presence-refresh", |stop| publisher.refresh(ttl, stop));
    }

    let listen: SocketAddr = cfg
        .server
        .listen
        .parse()
        .with_context(|| format!("server.listen {}", cfg.server.listen))?;
    let listener = crate::serve::bind(listen, cfg.server.listen_backlog)
        .with_context(|| format!("binding server.listen {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    let started = probe.started.clone();
    let gateway_out = gateway.clone();
    let sessions = gateway.tasks.clone();
    let router_http = crate::http::router(
        probe,
        roles
            .contains(&Role::Gateway)
            .then_some((gateway, service_token)),
    );
    started.store(true, Ordering::SeqCst);

    let grace = Duration::from_secs(cfg.session.shutdown_grace_secs);
    let stop = shutdown.clone();
    let done = tokio::spawn(async move {
        let head = crate::serve::HeadBounds {
            read_timeout: Duration::from_secs(cfg.server.header_read_timeout_secs),
            max_bytes: cfg.server.max_header_bytes,
            max_unconnected: crate::serve::max_unconnected(cfg.server.max_unconnected_sockets),
        };
        let conns = TaskTracker::new();
        let accepting =
            crate::serve::accept(listener, router_http, head, stop.clone(), conns.clone());
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
        // sweep above); what they accepted reaches the log before the roles stop.
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
    });
    Ok(Running {
        addr,
        shutdown,
        done,
        gateway: gateway_out,
    })
}
