//! Rules: list them and show one with what their guards hold now; the rules that loop detection
//! disabled, and turning one back on for a target.
//!
//! What the guards hold is the engine's published copy of the decide stage's guard state
//! ([`GuardStatus`]), as of the last commit that could change it, read at the request's time: a
//! cooldown that ended since is not shown.
//!
//! The list is the engine's published copy of the correlator's set ([`DisabledRules`]), as of the
//! last commit. Enabling is a [`Command::EnableRule`] event through [`Handle::command`], so a replay
//! of the journal enables the rule at the same point; the copy is updated after that command's
//! commit, before the call returns.
//!
//! [`DisabledRules`]: homeostat_engine::DisabledRules
//! [`GuardStatus`]: homeostat_engine::GuardStatus

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use homeostat_core::config::Scope;
use homeostat_core::guard::status::Snapshot;
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

/// `GET /api/v1/rules`: every rule of the config, in its order, with its guards' state.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    Ok(Json(json!({ "rules": every_rule(&handle) })))
}

/// Every rule of the config, in its order, as the API shows them.
pub(crate) fn every_rule(handle: &Handle) -> Vec<Value> {
    let snapshot = handle.guards().snapshot();
    let disabled = handle.disabled_rules().list();
    let now = handle.clock().now();
    handle
        .compiled()
        .config
        .rules
        .iter()
        .map(|rule| describe(handle, rule, &snapshot, &disabled, now))
        .collect()
}

/// `GET /api/v1/rules/{rule}`: one rule with its guards' state.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let compiled = handle.compiled();
    let Some(rule) = compiled.config.rules.iter().find(|rule| rule.name == name) else {
        let known: Vec<String> = compiled
            .config
            .rules
            .iter()
            .map(|rule| format!("`{}`", rule.name))
            .collect();
        let hint = if known.is_empty() {
            "the config has no `rules:`".to_string()
        } else {
            format!("known rules: {}", known.join(", "))
        };
        return Err(ApiError::new(
            Code::RuleNotFound,
            format!("no rule is named `{name}`; {hint}"),
        ));
    };
    let snapshot = handle.guards().snapshot();
    let disabled = handle.disabled_rules().list();
    let now = handle.clock().now();
    Ok(Json(json!({
        "rule": describe(&handle, rule, &snapshot, &disabled, now)
    })))
}

/// A rule as the API shows it: what it matches and runs, its guards as configured, and `state`,
/// what they hold at `now`.
fn describe(
    handle: &Handle,
    rule: &homeostat_core::config::Rule,
    snapshot: &Snapshot,
    disabled: &[(String, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let state = snapshot.rule(&rule.name, &rule.guards, disabled, now);
    json!({
        "name": rule.name,
        "description": rule.description,
        "match": rule.matchers,
        "condition": rule.condition,
        "on": rule.on,
        "on_incident": rule.on_incident,
        "target": rule.target,
        // A rule's inline steps are the runbook `rule:<name>`, as runs name it.
        "runbook": rule.runbook.clone().unwrap_or_else(|| format!("rule:{}", rule.name)),
        "dry_run": rule.guards.dry_run || handle.compiled().config.dry_run,
        "guards": rule.guards,
        "state": state,
    })
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
    let target = enable_as(&handle, &rule, &body.target, &by).await?;
    Ok(Json(
        json!({ "rule": rule, "target": target, "enabled": true }),
    ))
}

/// Turns `rule` back on for `target`, for `by`; answers the target as trimmed.
pub(crate) async fn enable_as(
    handle: &Handle,
    rule: &str,
    target: &str,
    by: &str,
) -> Result<String, ApiError> {
    let target = target.trim().to_string();
    if target.is_empty() {
        return Err(ApiError::new(
            Code::InvalidPayload,
            "target: the target is empty; `GET /api/v1/rules/disabled` lists the disabled pairs",
        ));
    }
    // A pair disabled before the rule left the config can still be enabled, so it does not stay
    // listed for ever.
    if !handle.disabled_rules().contains(rule, &target) {
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
        rule: rule.to_string(),
        target: target.clone(),
        by: by.to_string(),
    };
    handle.command(command, by).await.map_err(command_error)?;
    tracing::info!(%rule, %target, %by, "rule enabled by hand");
    Ok(target)
}
