//! The anomaly detectors the daemon runs: each series' latest score, expected range and state,
//! and how learning the history went, as of each detector's latest evaluation.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use homeostat_core::config::Scope;
use homeostat_engine::Handle;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

/// The detectors' endpoints, for the API's router.
pub fn routes() -> Router<Handle> {
    Router::new()
        .route("/api/v1/detectors", get(list))
        .route("/api/v1/detectors/{name}", get(show))
}

/// `GET /api/v1/detectors`: every detector, by name.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    Ok(Json(json!({ "detectors": handle.detectors().all() })))
}

/// `GET /api/v1/detectors/{name}`: one detector by its name.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    match handle.detectors().get(&name) {
        Some(detector) => Ok(Json(json!(detector))),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no detector is named `{name}`; `GET /api/v1/detectors` lists them"),
        )),
    }
}
