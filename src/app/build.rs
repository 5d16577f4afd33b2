//! Building the process: the configuration settled, the backends opened and
//! wrapped, the topics made, and the handles every role and socket shares
//! assembled into one `Gateway`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Role;
use crate::config::Config;
use crate::connections::registry::Registry;
use crate::gateway::Gateway;
use crate::gateway::auth::Authenticator;
use crate::http::Probe;
use crate::msglog::Topics;
use crate::pipeline::notices::NoticeBook;
use crate::pipeline::router::PushRouter;
use crate::pipeline::routing::PresenceRouting;
use crate::presence::{PresenceView, Publisher};

/// What `build` hands to the rest of `start`.
pub(super) struct Built {
    pub(super) gateway: Gateway,
    pub(super) probe: Probe,
    pub(super) service_token: Arc<str>,
}

pub(super) async fn build(
    cfg: Config,
    roles: &[Role],
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<Built> {
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
    Ok(Built {
        gateway,
        probe,
        service_token,
    })
}
