//! Starting the roles this process plays, each under the shared shutdown tree
//! (`shutdown::Roles`), each given only the handles it needs.

use std::time::Duration;

use super::Role;
use crate::gateway::Gateway;
use crate::pipeline::delay::DelayRole;
use crate::pipeline::notices::NoticeRole;
use crate::pipeline::pusher::Pusher;
use crate::pipeline::sequencer::Sequencer;
use crate::pipeline::stalls::Stalls;
use crate::shutdown::Roles;

/// Spawns every chosen role (presence following always) and returns them, to be
/// drained after the sockets.
pub(super) fn roles(gateway: &Gateway, stalls: &Stalls, roles: &[Role]) -> Roles {
    let Gateway {
        cfg,
        log,
        store,
        topics,
        registry,
        presence,
        router,
        ..
    } = gateway;
    let publisher = gateway.publisher.clone();
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
            budget: crate::budget::Budget::of(cfg),
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
            max_record: crate::budget::Budget::of(cfg).record_max(),
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
    tasks
}
