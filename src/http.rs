//! The HTTP surface: `/ws` and `/` (WebSocket), `/healthz`, `/readyz`, `/metrics`,
//! the server API under `/api/v1`, and `/demo` with the development secret.

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::connections::registry::Registry;

use crate::gateway::{Gateway, session, upgrade};
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
    /// Records the sequencer is retrying: one failing longer than `stuck` is a
    /// stuck pod (`pipeline.stuck_lane_secs`).
    pub(crate) stalls: crate::pipeline::stalls::Stalls,
    pub(crate) stuck: std::time::Duration,
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
        let body_timeout =
            std::time::Duration::from_secs(gateway.cfg.server.body_read_timeout_secs);
        let echo_state = gateway.clone();
        r = r.merge(
            Router::new()
                .route("/ws", get(ws))
                .route("/", get(ws))
                .nest("/api/v1", crate::api::router(service_token, body_timeout))
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

async fn ws(State(app): State<Gateway>, RawQuery(query): RawQuery, mut req: Request) -> Response {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Err(refused) = crate::gateway::origin::check(&app.cfg, req.headers()) {
        metrics::counter!("ferry_origin_refusals_total").increment(1);
        return refused.into_response();
    }
    let (response, pending) = match upgrade::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    // The query carries the token: only its redacted form is ever recorded.
    tracing::debug!(query = %crate::gateway::auth::redact_query(query.as_deref().unwrap_or("")), "upgrade");
    let params = session::params_from(query.as_deref());
    let tasks = app.tasks.clone();
    // One pointer in the session's future for the handles and parameters, freed once
    // it has connected.
    let start: session::Start = Box::new((app, params));
    tasks.spawn(session::run(start, pending));
    response
}

/// `/conformance/echo` (only with `server.conformance_echo`): see gateway::conformance.
async fn conformance_echo_ws(State(app): State<Gateway>, mut req: Request) -> Response {
    let idle = std::time::Duration::from_secs(app.cfg.session.idle_timeout_secs);
    let (response, pending) = match upgrade::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let cfg = crate::gateway::socket_config::socket_config(&app);
    tokio::spawn(async move {
        if let Some(socket) = pending.socket(cfg).await {
            crate::gateway::conformance::run(socket, idle).await;
        }
    });
    response
}

async fn readyz(State(app): State<Probe>) -> Response {
    let started = app.started.load(std::sync::atomic::Ordering::SeqCst);
    let log = app.log.ping().await;
    let store = app.store.ping().await;
    let joined = app.log.groups_joined();
    let failing = app.stalls.longest();
    let stuck = failing.is_some_and(|d| d > app.stuck);
    let body = serde_json::json!({
        "started": started,
        "consumersJoined": joined,
        "log": log.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "store": store.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "shuttingDown": app.shutdown.is_cancelled(),
        "sequencerFailingSecs": failing.map(|d| d.as_secs()),
        "sequencerStuck": stuck,
    });
    let ok =
        started && joined && log.is_ok() && store.is_ok() && !stuck && !app.shutdown.is_cancelled();
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
