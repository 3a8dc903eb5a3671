//! The SLOs the daemon evaluates: their error budgets, burn rates and firing alerts, as of each
//! SLO's latest evaluation.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use homeostat_core::config::Scope;
use homeostat_engine::Handle;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

/// `GET /api/v1/slos`: every SLO, by id.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    Ok(Json(json!({ "slos": handle.slos().all() })))
}

/// `GET /api/v1/slos/{id}`: one SLO by its id, `<service>-<name>`.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    match handle.slos().get(&id) {
        Some(slo) => Ok(Json(json!(slo))),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no SLO has the id `{id}`; `GET /api/v1/slos` lists them"),
        )),
    }
}
