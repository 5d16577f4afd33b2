//! The HTTP surface: `/ws` and `/` (WebSocket), `/healthz`, `/readyz`, `/metrics`,
//! the server API under `/api/v1`, and `/demo` with the development secret.

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::connections::registry::Registry;
use crate::gateway::{Gateway, session};
use crate::msglog::MsgLog;
use crate::store::Store;

/// What the health, readiness and metrics endpoints read.
#[derive(Clone)]
pub(crate) struct Probe {
    pub(crate) log: Arc<dyn MsgLog>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    /// Set once every role has started.
    pub(crate) started: Arc<AtomicBool>,
    /// Cancelled on shutdown: not ready any more.
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: Option<PrometheusHandle>,
}

/// The probes always; sockets and the server API (behind `service_token`) when this
/// process plays the gateway role.
pub(crate) fn router(probe: Probe, gateway: Option<(Gateway, Arc<str>)>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probe);
    if let Some((gateway, service_token)) = gateway {
        let demo = crate::demo::router(&gateway);
        let conformance_echo = gateway.cfg.server.conformance_echo;
        let echo_state = gateway.clone();
        r = r.merge(
            Router::new()
                .route("/ws", get(ws))
                .route("/", get(ws))
                .nest("/api/v1", crate::api::router(service_token))
                .with_state(gateway),
        );
        if let Some(demo) = demo {
            r = r.merge(demo);
        }
        if conformance_echo {
            r = r.merge(
                Router::new()
                    .route("/conformance/echo", get(conformance_echo_ws))
                    .with_state(echo_state),
            );
        }
    }
    r
}

async fn ws(
    State(app): State<Gateway>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    // The query carries the token: only its redacted form is ever recorded.
    tracing::debug!(query = %crate::gateway::auth::redact_query(query.as_deref().unwrap_or("")), "upgrade");
    let params = session::params_from(query.as_deref());
    let tasks = app.tasks.clone();
    let upgrade = sized(upgrade, &app);
    // One pointer in the upgrade's task instead of the handles and parameters: the
    // closure stays in that task's future for the socket's whole life.
    let start: session::Start = Box::new((app, params));
    upgrade.on_upgrade(move |socket| tasks.track_future(session::run(start, socket)))
}

/// Frames written together are gathered up to this many bytes before the socket
/// writes them (a `flush` writes whatever is gathered). The buffer keeps its size
/// after a burst, so this bounds what a socket that once had a backlog holds.
pub(crate) const WRITE_BUFFER_BYTES: usize = 4 << 10;

/// The read buffer every socket holds for its whole life (its largest frame grows
/// it): a ping or a short request fits, a larger frame takes one read per this many
/// bytes. Idle sockets only ever read pings and pongs.
pub(crate) const READ_BUFFER_BYTES: usize = 256;

/// Every WebSocket ferry accepts is configured here. Small per-socket buffers: idle
/// sockets must stay cheap (see BENCHMARKS.md).
fn sized(upgrade: WebSocketUpgrade, app: &Gateway) -> WebSocketUpgrade {
    let limit = app.cfg.limits.max_frame_bytes;
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
}

/// `/conformance/echo` (only with `server.conformance_echo`): see gateway::conformance.
async fn conformance_echo_ws(State(app): State<Gateway>, upgrade: WebSocketUpgrade) -> Response {
    let idle = std::time::Duration::from_secs(app.cfg.session.idle_timeout_secs);
    sized(upgrade, &app).on_upgrade(move |socket| crate::gateway::conformance::run(socket, idle))
}

async fn readyz(State(app): State<Probe>) -> Response {
    let started = app.started.load(std::sync::atomic::Ordering::SeqCst);
    let log = app.log.ping().await;
    let store = app.store.ping().await;
    let joined = app.log.groups_joined();
    let body = serde_json::json!({
        "started": started,
        "consumersJoined": joined,
        "log": log.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "store": store.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "shuttingDown": app.shutdown.is_cancelled(),
    });
    let ok = started && joined && log.is_ok() && store.is_ok() && !app.shutdown.is_cancelled();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<Probe>) -> Response {
    match &app.metrics {
        Some(h) => {
            metrics::gauge!("ferry_connections_total_open")
                .set(app.registry.connection_count() as f64);
            h.render().into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics disabled").into_response(),
    }
}
