//! What a pod does when a socket comes and goes: the local registry, duplicate-device
//! replacement (here and on other pods), presence, pending notices.

use super::Gateway;
use super::wire::Closing;
use crate::config::DevicePolicy;
use crate::connections::registry::Conn;
use crate::pipeline::notices::push_pending;
use crate::pipeline::router::PushPayload;
use crate::proto::records::Disconnect;

/// Registers `conn`; Err (nothing registered, the reason to close with) when its
/// account was closed for flooding moments ago or connects too often, or its user
/// already has `limits.max_connections_per_user` sockets here that it would not
/// replace.
pub(crate) async fn connected(app: &Gateway, conn: &Conn) -> Result<(), Closing<'static>> {
    let now = std::time::Instant::now();
    let user = &conn.user;
    // By account, not by device: a client chooses its deviceId, and a fresh one
    // would otherwise reconnect at once.
    if let Some(left) = app.cooldown.remaining(user, now) {
        return Err(Closing::CoolingDown(left.as_secs_f64().ceil() as u64));
    }
    if let Err(wait) = app.accounts.connect(user, now) {
        metrics::counter!("ferry_connects_refused_total", "reason" => "account_rate").increment(1);
        return Err(Closing::ConnectingTooOften(wait.as_secs_f64().ceil() as u64));
    }
    let one_per_platform = app.cfg.session.device_policy == DevicePolicy::OnePerPlatform;
    let per_user = app.cfg.limits.max_connections_per_user;
    let Some(displaced) = app
        .registry
        .insert(conn.clone(), one_per_platform, per_user)
    else {
        return Err(Closing::UserFull);
    };
    // Registered after shutdown's sweep of the registry: close as it would have.
    if app.shutdown.is_cancelled() {
        conn.closer.shut_down();
    }
    for (old, same_device) in displaced {
        if same_device {
            Closing::Duplicate.close(&old.closer);
        } else {
            Closing::Kick.close(&old.closer);
        }
    }
    // The same device (or, by policy, platform) connected to another pod earlier.
    let (code, reason) = if one_per_platform {
        Closing::Kick.pair()
    } else {
        Closing::Duplicate.pair()
    };
    let remote = Disconnect {
        platform: conn.platform.clone(),
        device_id: if one_per_platform {
            String::new()
        } else {
            conn.device_id.clone()
        },
        except_conn_id: conn.conn_id.clone(),
        close_code: u32::from(code),
        reason,
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
    Ok(())
}

/// The socket is about to be closed (its closer has fired), before the client is told:
/// an account closed for flooding starts its cooldown now, so a reconnect made the
/// moment the Close frame arrives is already refused.
pub(crate) fn closing(app: &Gateway, conn: &Conn) {
    if conn.closer.why() == Some(Closing::Flooding.pair()) {
        let now = std::time::Instant::now();
        app.cooldown.start(&conn.user, now);
    }
}

pub(crate) async fn disconnected(app: &Gateway, conn: &Conn) {
    if app.registry.remove(&conn.user, &conn.conn_id) {
        app.publisher.publish(&conn.user).await;
    }
}
