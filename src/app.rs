//! Wiring: opens the backends, starts the chosen roles under one shutdown tree,
//! binds the listener, and drains on shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, LogKind, StoreKind};
use crate::gateway::auth::Authenticator;
use crate::gateway::registry::Registry;
use crate::msglog::kafka::{KafkaLog, KafkaSettings};
use crate::msglog::{MsgLog, Retention, TopicSpec, Topics};
use crate::pipeline::delay::DelayRole;
use crate::pipeline::notices::{NoticeBook, NoticeRole};
use crate::pipeline::presence::PresenceView;
use crate::pipeline::pusher::Pusher;
use crate::pipeline::router::PushRouter;
use crate::pipeline::sequencer::Sequencer;
use crate::store::Store;
use crate::store::scylla::{ScyllaSettings, ScyllaStore};

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
}

pub(crate) const ALL_ROLES: [Role; 4] = [Role::Gateway, Role::Sequencer, Role::Delay, Role::Pusher];

/// Everything a request handler or role needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) cfg: Arc<Config>,
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) topics: Topics,
    pub(crate) pod: String,
    pub(crate) registry: Arc<Registry>,
    pub(crate) presence: Arc<PresenceView>,
    pub(crate) router: PushRouter,
    pub(crate) notices: Arc<NoticeBook>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) http: reqwest::Client,
    pub(crate) service_token: Arc<str>,
    /// Cancelled on shutdown: sessions close with 1012.
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// Set once every role has started (readiness).
    pub(crate) started: Arc<AtomicBool>,
}

/// Reads a development secret from `dir/name`, creating it on first use.
pub(crate) fn dev_secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_owned());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating data_dir {}", dir.display()))?;
    let secret: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..48)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect()
    };
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(secret)
}

/// The JWT secret to use when the configuration names no key.
pub(crate) fn auth_dev_secret(cfg: &Config) -> anyhow::Result<Option<String>> {
    let a = &cfg.auth;
    if a.hs256_secret.is_some() || a.public_key_file.is_some() || a.jwks_file.is_some() {
        return Ok(None);
    }
    dev_secret(&cfg.data_dir, "dev-jwt-secret").map(Some)
}

pub(crate) fn kafka_settings(cfg: &Config) -> KafkaSettings {
    KafkaSettings {
        brokers: cfg.kafka.brokers.clone(),
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        partitions: cfg.kafka.partitions,
        replication: cfg.kafka.replication,
        properties: cfg.kafka.properties.clone(),
        append_timeout: Duration::from_millis(cfg.log.append_timeout_ms),
    }
}

pub(crate) fn scylla_settings(cfg: &Config) -> ScyllaSettings {
    let s = &cfg.scylla;
    ScyllaSettings {
        nodes: s.nodes.clone(),
        keyspace: s.keyspace.clone(),
        replication: s.replication,
        username: s.username.clone(),
        password: s.password.clone(),
    }
}

pub(crate) async fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn MsgLog>> {
    Ok(match cfg.log.kind {
        LogKind::Embedded => Arc::new(crate::msglog::embedded::EmbeddedLog::open(&cfg.data_dir)?),
        LogKind::Kafka => Arc::new(KafkaLog::connect(&kafka_settings(cfg))?),
    })
}

pub(crate) async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match cfg.store.kind {
        StoreKind::Embedded => {
            Arc::new(crate::store::embedded::EmbeddedStore::open(&cfg.data_dir)?)
        }
        StoreKind::Scylla => Arc::new(ScyllaStore::connect(&scylla_settings(cfg)).await?),
    })
}

/// Every topic ferry uses, with how each keeps its records.
pub(crate) fn topic_specs(cfg: &Config, topics: &Topics) -> Vec<TopicSpec> {
    let mut specs = vec![
        TopicSpec {
            name: topics.inbound(),
            retention: Retention::Forever,
        },
        TopicSpec {
            name: topics.notices(),
            retention: Retention::Compacted,
        },
        TopicSpec {
            name: topics.presence(),
            retention: Retention::Compacted,
        },
        TopicSpec {
            name: topics.dead_letter(),
            retention: Retention::Full,
        },
        TopicSpec {
            name: topics.push(&cfg.pod),
            retention: Retention::Ephemeral,
        },
    ];
    specs.extend(cfg.pipeline.delay_tiers_secs.iter().map(|t| TopicSpec {
        name: topics.delay(*t),
        retention: Retention::Full,
    }));
    specs
}

/// A started process: where it listens, and how to stop it.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) done: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The handles the roles and sessions share (for in-process drivers such as the
    /// fuzz targets).
    pub(crate) state: AppState,
}

pub(crate) async fn start(
    cfg: Config,
    roles: &[Role],
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<Running> {
    let cfg = Arc::new(cfg);
    let dev = auth_dev_secret(&cfg)?;
    let auth = Arc::new(Authenticator::new(&cfg.auth, dev.as_deref())?);
    let service_token: Arc<str> = match &cfg.api.service_token {
        Some(t) => t.as_str().into(),
        None => dev_secret(&cfg.data_dir, "dev-service-token")?.into(),
    };
    let log = open_log(&cfg).await.context("opening the log")?;
    let store = open_store(&cfg).await.context("opening the store")?;
    let topics = Topics::new(&cfg.kafka.topic_prefix);
    for spec in topic_specs(&cfg, &topics) {
        log.ensure_topic(&spec)
            .await
            .with_context(|| format!("creating topic {}", spec.name))?;
    }
    let registry = Registry::new();
    let presence = PresenceView::new(cfg.pipeline.presence_ttl_secs);
    let local = roles
        .contains(&Role::Gateway)
        .then(|| (cfg.pod.clone(), registry.clone()));
    let router = PushRouter {
        log: log.clone(),
        topics: topics.clone(),
        presence: presence.clone(),
        local,
    };
    let shutdown = CancellationToken::new();
    let state = AppState {
        cfg: cfg.clone(),
        log: log.clone(),
        store: store.clone(),
        topics: topics.clone(),
        pod: cfg.pod.clone(),
        registry: registry.clone(),
        presence: presence.clone(),
        router: router.clone(),
        notices: NoticeBook::new(),
        auth,
        http: reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?,
        service_token,
        shutdown: shutdown.clone(),
        metrics,
        started: Arc::new(AtomicBool::new(false)),
    };

    // Roles stop on `roles_stop`, after the sockets are closed (`shutdown`).
    let roles_stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let spawn_role = |name: &'static str,
                      fut: std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>,
    >| {
        let stop = roles_stop.clone();
        tracker.spawn(async move {
            if let Err(e) = fut.await {
                tracing::error!(role = name, error = %e, "role failed; stopping");
                stop.cancel();
            }
        });
    };
    spawn_role(
        "presence",
        Box::pin(
            presence
                .clone()
                .follow(log.clone(), topics.clone(), roles_stop.clone()),
        ),
    );
    if roles.contains(&Role::Sequencer) {
        let s = Sequencer {
            log: log.clone(),
            store: store.clone(),
            topics: topics.clone(),
            router: router.clone(),
        };
        spawn_role("sequencer", Box::pin(s.run(roles_stop.clone())));
    }
    if roles.contains(&Role::Delay) {
        let d = DelayRole {
            log: log.clone(),
            topics: topics.clone(),
            tiers: cfg.pipeline.delay_tiers_secs.clone(),
        };
        spawn_role("delay", Box::pin(d.run(roles_stop.clone())));
    }
    if roles.contains(&Role::Sequencer) || roles.contains(&Role::Delay) {
        let l = crate::pipeline::lag::LagRole {
            log: log.clone(),
            topics: topics.clone(),
            tiers: cfg.pipeline.delay_tiers_secs.clone(),
            every: Duration::from_secs(15),
        };
        spawn_role("lag", Box::pin(l.run(roles_stop.clone())));
    }
    if roles.contains(&Role::Pusher) {
        let p = Pusher {
            log: log.clone(),
            topics: topics.clone(),
            pod: cfg.pod.clone(),
            registry: registry.clone(),
        };
        spawn_role("pusher", Box::pin(p.run(roles_stop.clone())));
    }
    if roles.contains(&Role::Gateway) {
        let n = NoticeRole {
            log: log.clone(),
            topics: topics.clone(),
            book: state.notices.clone(),
            registry: registry.clone(),
            interval: Duration::from_secs(cfg.pipeline.notice_repush_secs),
        };
        spawn_role("notices", Box::pin(n.run(roles_stop.clone())));
        spawn_role(
            "presence-refresh",
            Box::pin(refresh_presence(state.clone(), roles_stop.clone())),
        );
    }

    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("binding server.listen {}", cfg.server.listen))?;
    let addr = listener.local_addr()?;
    let router_http = crate::http::router(state.clone(), roles.contains(&Role::Gateway));
    state.started.store(true, Ordering::SeqCst);

    let grace = Duration::from_secs(cfg.session.shutdown_grace_secs);
    let stop = shutdown.clone();
    let state_out = state.clone();
    let done = tokio::spawn(async move {
        let server =
            axum::serve(listener, router_http.into_make_service()).with_graceful_shutdown({
                let stop = stop.clone();
                async move { stop.cancelled().await }
            });
        // A failed role stops the whole process, as a signal would.
        let failed = roles_stop.clone();
        let watcher = tokio::spawn({
            let stop = stop.clone();
            async move {
                failed.cancelled().await;
                stop.cancel();
            }
        });
        let result = server.await.map_err(anyhow::Error::from);
        // Sockets are closed; now stop the roles, which flush and commit.
        roles_stop.cancel();
        watcher.abort();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("roles did not stop within the grace period");
        }
        let _ = state.log.delete_topic(&state.topics.push(&state.pod)).await;
        result
    });
    Ok(Running {
        addr,
        shutdown,
        done,
        state: state_out,
    })
}

/// Re-publishes this pod's presence before it goes stale on the other pods.
async fn refresh_presence(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let every = Duration::from_secs((state.cfg.pipeline.presence_ttl_secs / 3).max(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {
                for user in state.registry.users() {
                    crate::gateway::presence::publish(&state, &user).await;
                }
            }
        }
    }
}
