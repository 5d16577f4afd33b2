//! What a pod does when a socket comes and goes: the local registry, duplicate-device
//! replacement (here and on other pods), presence, pending notices.

use super::Gateway;
use crate::config::DevicePolicy;
use crate::connections::registry::{Conn, close};
use crate::pipeline::notices::push_pending;
use crate::pipeline::router::PushPayload;
use crate::proto::records::Disconnect;

pub(crate) async fn connected(app: &Gateway, conn: &Conn) {
    let one_per_platform = app.cfg.session.device_policy == DevicePolicy::OnePerPlatform;
    for (old, same_device) in app.registry.insert(conn.clone(), one_per_platform) {
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
        .filter(|p| *p != app.cfg.pod)
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
    app.publisher.publish(&conn.user).await;
    push_pending(&app.notices, &app.registry, &conn.user);
}

pub(crate) async fn disconnected(app: &Gateway, conn: &Conn) {
    if app.registry.remove(&conn.user, &conn.conn_id) {
        app.publisher.publish(&conn.user).await;
    }
}
