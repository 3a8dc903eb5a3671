//! `POST /-/reload`: reloads the config as SIGHUP does (Prometheus' and Alertmanager's endpoint).
//!
//! It needs the `write` scope: a reload changes what the daemon does, as starting a runbook or
//! enabling a rule does, and `write` is the scope for changing the daemon's behaviour (`ingest`
//! only adds events, `read` only looks).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use homeostat_core::config::Scope;
use homeostat_engine::reload::{Error, Summary};
use homeostat_engine::Handle;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

/// Reloads the config: 200 with what changed, or 400 with what `homeostat check` would say, the
/// config in use staying.
pub async fn reload(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    tracing::info!(%by, "config reload asked for over the API");
    match handle.reload().await {
        Ok(summary) => Ok(Json(answer(&summary))),
        Err(error @ (Error::Invalid(_) | Error::NeedsCluster { .. })) => {
            Err(ApiError::new(Code::InvalidConfig, error.to_string()))
        }
        Err(error @ Error::NoLoader) => {
            Err(ApiError::new(Code::ReloadUnavailable, error.to_string()))
        }
        Err(error @ Error::WriterStopped) => {
            Err(ApiError::new(Code::Unavailable, error.to_string()))
        }
    }
}

fn answer(summary: &Summary) -> Value {
    let mut body = serde_json::to_value(summary).unwrap_or_else(|_| json!({}));
    if let Some(object) = body.as_object_mut() {
        object.insert("reloaded".into(), json!(true));
    }
    body
}
