//! homeostat's HTTP API: ingest hooks, read endpoints, runbooks and runs by hand, run logs,
//! incidents and silences, rules that loop detection disabled, the OpenAPI document, `/metrics`
//! and health; and Alertmanager's API v2 (alerts in, silences), so Prometheus, amtool and Grafana
//! can talk to homeostat as to an Alertmanager; `POST /-/reload` reloads the config.

pub mod alertmanager;
pub mod auth;
pub mod detectors;
pub mod error;
pub mod incidents;
pub mod ingest;
pub mod logs;
pub mod openapi;
pub mod read;
pub mod reload;
pub mod rules;
pub mod runbooks;
pub mod server;
pub mod silences;
pub mod slos;
pub mod ui;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use homeostat_engine::Handle;

/// The whole API, with the engine handle as state.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route(
            "/api/v1/hooks/alertmanager",
            post(ingest::alertmanager_hook),
        )
        .route("/api/v1/hooks/{source}", post(ingest::source_hook))
        .route(
            "/api/v1/events",
            post(ingest::events).get(read::list_events),
        )
        .route("/api/v1/events/{id}", get(read::get_event))
        .route("/api/v1/runs", get(read::list_runs))
        .route("/api/v1/runs/{id}", get(read::get_run))
        .route("/api/v1/runs/{id}/logs", get(logs::logs))
        .route("/api/v1/runs/{id}/approval", post(runbooks::approval))
        .route("/api/v1/runs/{id}/cancel", post(runbooks::cancel))
        .route("/api/v1/approvals", get(runbooks::approvals))
        .route("/api/v1/runbooks", get(runbooks::list))
        .route("/api/v1/runbooks/{name}", get(runbooks::show))
        .route("/api/v1/runbooks/{name}/runs", post(runbooks::start))
        .route("/api/v1/incidents", get(incidents::list))
        .route("/api/v1/incidents/{id}", get(incidents::show))
        .route("/api/v1/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/api/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/api/v1/incidents/{id}/notes", post(incidents::note))
        .route(
            "/api/v1/incidents/{id}/postmortem",
            get(incidents::postmortem),
        )
        .route(
            "/api/v1/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v1/silences/{id}",
            get(silences::show).delete(silences::expire),
        )
        .route("/api/v1/slos", get(slos::list))
        .route("/api/v1/slos/{id}", get(slos::show))
        .merge(detectors::routes())
        .route("/api/v1/rules", get(rules::list))
        .route("/api/v1/rules/disabled", get(rules::disabled))
        .route("/api/v1/rules/{rule}", get(rules::show))
        .route("/api/v1/rules/{rule}/enable", post(rules::enable))
        .route("/api/v1/openapi.json", get(openapi::document))
        // Alertmanager's API v2, for Prometheus, amtool and Grafana.
        .route(
            "/api/v2/alerts",
            post(alertmanager::post_alerts).get(alertmanager::get_alerts),
        )
        .route("/api/v2/alerts/groups", get(alertmanager::get_alert_groups))
        .route(
            "/api/v2/silences",
            get(alertmanager::get_silences).post(alertmanager::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(alertmanager::get_silence).delete(alertmanager::delete_silence),
        )
        .route("/api/v2/receivers", get(alertmanager::get_receivers))
        .route("/api/v2/status", get(alertmanager::get_status))
        .route("/-/reload", post(reload::reload))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(ui::routes(&handle))
        .fallback(not_found)
        .with_state(handle)
}

async fn metrics(State(handle): State<Handle>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        handle.metrics().render(),
    )
}

/// Alive: the process answers.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Ready: recovery is done, the journal takes work (its last commit succeeded and its disk has
/// room), and the store answers.
async fn readyz(State(handle): State<Handle>) -> impl IntoResponse {
    if let Err(reason) = handle.readiness() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        );
    }
    match handle.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "store unavailable\n".to_string(),
            )
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::new(
        error::Code::NotFound,
        format!("no endpoint at `{}`; see /api/v1/openapi.json", uri.path()),
    )
}
