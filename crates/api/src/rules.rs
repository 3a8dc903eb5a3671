//! Rules that loop detection disabled: list them, and turn one back on for a target.
//!
//! The list is the engine's published copy of the correlator's set ([`DisabledRules`]), as of the
//! last commit. Enabling is a [`Command::EnableRule`] event through [`Handle::command`], so a replay
//! of the journal enables the rule at the same point; the copy is updated after that command's
//! commit, before the call returns.
//!
//! [`DisabledRules`]: homeostat_engine::DisabledRules

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use homeostat_core::config::Scope;
use homeostat_core::incident::Command;
use homeostat_engine::Handle;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};
use crate::incidents::command_error;
use crate::ingest::read_body;
use crate::runbooks::parse_json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    target: String,
}

/// `GET /api/v1/rules/disabled`: the (rule, target) pairs loop detection turned off.
pub async fn disabled(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let disabled: Vec<Value> = handle
        .disabled_rules()
        .list()
        .into_iter()
        .map(|(rule, target)| json!({ "rule": rule, "target": target }))
        .collect();
    Ok(Json(json!({ "disabled": disabled })))
}

/// `POST /api/v1/rules/{rule}/enable`: turns the rule back on for the body's `target`.
pub async fn enable(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(rule): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let body: EnableBody = parse_json(&read_body(&handle, &headers, body).await?)?;
    let target = body.target.trim().to_string();
    if target.is_empty() {
        return Err(ApiError::new(
            Code::InvalidPayload,
            "target: the target is empty; `GET /api/v1/rules/disabled` lists the disabled pairs",
        ));
    }
    // A pair disabled before the rule left the config can still be enabled, so it does not stay
    // listed for ever.
    if !handle.disabled_rules().contains(&rule, &target) {
        if !handle
            .compiled()
            .rules
            .iter()
            .any(|known| known.name == rule)
        {
            return Err(ApiError::new(
                Code::RuleNotFound,
                format!("no rule is named `{rule}`; the config's `rules:` names them"),
            ));
        }
        return Err(ApiError::new(
            Code::RuleNotDisabled,
            format!(
                "rule `{rule}` is not disabled for `{target}`; `GET /api/v1/rules/disabled` lists the disabled pairs"
            ),
        ));
    }
    let command = Command::EnableRule {
        rule: rule.clone(),
        target: target.clone(),
        by: by.clone(),
    };
    handle.command(command, &by).await.map_err(command_error)?;
    tracing::info!(%rule, %target, %by, "rule enabled by hand");
    Ok(Json(
        json!({ "rule": rule, "target": target, "enabled": true }),
    ))
}
