//! What a pod does when a socket comes and goes: the local registry, duplicate-device
//! replacement (here and on other pods), the presence topic, pending notices.

use super::registry::{Conn, close};
use crate::app::AppState;
use crate::config::DevicePolicy;
use crate::pipeline::notices::push_pending;
use crate::pipeline::presence;
use crate::pipeline::router::PushPayload;
use crate::proto::records::{Device, Disconnect};

fn devices(app: &AppState, user: &str) -> Vec<Device> {
    app.registry
        .conns(user)
        .into_iter()
        .map(|c| Device {
            platform: c.platform,
            device_id: c.device_id,
            conn_id: c.conn_id,
        })
        .collect()
}

/// Publishes this pod's current view of `user` (a tombstone when none is left).
pub(crate) async fn publish(app: &AppState, user: &str) {
    let rec = presence::record(&app.topics, &app.pod, user, devices(app, user));
    if let Err(e) = app.log.append(vec![rec]).await {
        tracing::warn!(error = %e, user, "presence update failed");
    }
}

/// Registers `conn`; false (nothing registered) when its user already has
/// `limits.max_connections_per_user` sockets here that it would not replace.
pub(crate) async fn connected(app: &AppState, conn: &Conn) -> bool {
    let one_per_platform = app.cfg.session.device_policy == DevicePolicy::OnePerPlatform;
    let per_user = app.cfg.limits.max_connections_per_user;
    let Some(displaced) = app
        .registry
        .insert(conn.clone(), one_per_platform, per_user)
    else {
        return false;
    };
    for (old, same_device) in displaced {
        if same_device {
            old.closer.close(close::NORMAL, "duplicate connection");
        } else {
            old.closer.close(close::GOING_AWAY, "kick");
        }
    }
    // The same device (or, by policy, platform) connected to another pod earlier.
    let remote = Disconnect {
        platform: conn.platform.clone(),
        device_id: if one_per_platform {
            String::new()
        } else {
            conn.device_id.clone()
        },
        except_conn_id: conn.conn_id.clone(),
        close_code: u32::from(if one_per_platform {
            close::GOING_AWAY
        } else {
            close::NORMAL
        }),
        reason: if one_per_platform {
            "kick".into()
        } else {
            "duplicate connection".into()
        },
    };
    let others: Vec<String> = app
        .presence
        .pods(&conn.user)
        .into_iter()
        .filter(|p| *p != app.pod)
        .collect();
    if !others.is_empty() {
        let router = app.router.clone();
        if let Err(e) = router
            .push(
                std::slice::from_ref(&conn.user),
                PushPayload::Disconnect(remote),
                &[],
            )
            .await
        {
            tracing::warn!(error = %e, "remote duplicate-device close failed");
        }
    }
    publish(app, &conn.user).await;
    push_pending(&app.notices, &app.registry, &conn.user);
    true
}

pub(crate) async fn disconnected(app: &AppState, conn: &Conn) {
    if app.registry.remove(&conn.user, &conn.conn_id) {
        publish(app, &conn.user).await;
    }
}
