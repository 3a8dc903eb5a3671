//! Runbooks by hand: list and show them, start a run, answer an approval, cancel a run.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use homeostat_core::config::{Runbook, Scope};
use homeostat_engine::StartError;
use homeostat_engine::{runs, Handle};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};
use crate::ingest::read_body;

/// `GET /api/v1/runbooks`: every named runbook with its parameters and top-level steps.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let runbooks: Vec<Value> = handle
        .compiled()
        .runbooks
        .values()
        .map(|program| summary(&program.spec))
        .collect();
    Ok(Json(json!({ "runbooks": runbooks })))
}

/// A runbook as the list shows it: every parameter field present, `null` when not declared, so
/// clients need not know the config's defaults.
fn summary(runbook: &Runbook) -> Value {
    let params: serde_json::Map<String, Value> = runbook
        .params
        .iter()
        .map(|(name, param)| {
            (
                name.clone(),
                json!({
                    "type": param.kind.as_str(),
                    "required": param.required,
                    "default": param.default,
                    "allowed": param.allowed,
                    "description": param.description,
                }),
            )
        })
        .collect();
    let steps: Vec<&str> = runbook
        .steps
        .iter()
        .map(|step| step.name.as_str())
        .collect();
    json!({
        "name": runbook.name,
        "description": runbook.description,
        "params": params,
        "steps": steps,
    })
}

/// `GET /api/v1/runbooks/{name}`: the runbook's full spec, as the config declares it.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let compiled = handle.compiled();
    let program = compiled
        .runbooks
        .get(&name)
        .ok_or_else(|| unknown_runbook(&handle, &name))?;
    Ok(Json(json!({ "runbook": program.spec })))
}

fn unknown_runbook(handle: &Handle, name: &str) -> ApiError {
    let known: Vec<String> = handle
        .compiled()
        .runbooks
        .keys()
        .map(|name| format!("`{name}`"))
        .collect();
    let hint = if known.is_empty() {
        "the config declares none under `runbooks:`".to_string()
    } else {
        format!("known runbooks: {}", known.join(", "))
    };
    ApiError::new(
        Code::RunbookNotFound,
        format!("no runbook is named `{name}`; {hint}"),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Values as JSON, or as text that converts to the declared type (`"3"` for an integer).
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    dry_run: bool,
    /// The incident the run is for: it shows on the incident's timeline, credited to the caller.
    #[serde(default)]
    incident: Option<i64>,
}

/// `POST /api/v1/runbooks/{name}/runs`: starts a run for the calling token. A real run is committed
/// and dispatched before the answer; a dry run is complete, unless it has Kubernetes steps, which
/// ask the API server for a dry run and are dispatched as a real run is.
pub async fn start(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let bytes = read_body(&handle, &headers, body).await?;
    let body: StartBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        parse_json(&bytes)?
    };
    let plan = handle
        .start_runbook_for(
            &name,
            &body.params,
            body.target,
            body.dry_run,
            &by,
            body.incident,
        )
        .await
        .map_err(|error| start_error(&handle, &name, error))?;
    // A dry run is complete now, unless its actions ask their API for a dry run
    // (`kubernetes.*`): then it runs like a real one.
    let complete = plan.dry_run
        && !handle
            .compiled()
            .runbooks
            .get(&name)
            .is_some_and(|program| program.asks_server_dry_run());
    let location = format!("/api/v1/runs/{}", plan.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({
            "run_id": plan.id,
            "runbook": plan.runbook,
            "target": plan.target,
            "dry_run": plan.dry_run,
            "incident": body.incident,
            "status": if complete { "dry_run" } else { "running" },
        })),
    )
        .into_response())
}

/// Why runbook `name` did not start, as the API answers it.
pub(crate) fn start_error(handle: &Handle, name: &str, error: StartError) -> ApiError {
    match error {
        StartError::UnknownRunbook { .. } => unknown_runbook(handle, name),
        StartError::UnknownIncident { incident } => ApiError::new(
            Code::IncidentNotFound,
            format!("no incident has the number `{incident}`; `GET /api/v1/incidents` lists them"),
        ),
        StartError::Param(error) => ApiError::new(Code::InvalidParam, error.to_string()),
        StartError::Unavailable(message) => ApiError::new(Code::Unavailable, message),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    /// Approvals this token may not give too, marked `may_approve: false`.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/approvals`: the approvals runs wait for that the calling token may give (it has the
/// `write` scope, and the step names no approvers or names it), soonest deadline first: the run,
/// its runbook, target and parameters, the step, its message and deadline, and the steps that run
/// after it once approved. `?all=true` lists the others too.
pub async fn approvals(
    State(handle): State<Handle>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ApprovalsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Read)?;
    let axum::extract::Query(query) =
        query.map_err(|error| ApiError::new(Code::InvalidQuery, error.body_text()))?;
    let can_write = authorize(&handle, &headers, Scope::Write).is_ok();
    let listed = waiting(&handle, &by, can_write, query.all).await?;
    Ok(Json(json!({ "approvals": listed })))
}

/// The approvals waiting now, soonest deadline first: those `by` may give, or with `all` every one.
pub(crate) async fn waiting(
    handle: &Handle,
    by: &str,
    can_write: bool,
    all: bool,
) -> Result<Vec<Value>, ApiError> {
    let mut listed = Vec::new();
    for (run_id, waiting) in handle.runs().waiting_approvals() {
        // A run that ended since it was listed live is not waiting any more.
        let Some(run) = handle
            .store()
            .run(&run_id)
            .await
            .map_err(crate::read::store_error)?
        else {
            continue;
        };
        for approval in waiting {
            let may_approve = can_write
                && (approval.approvers.is_empty()
                    || approval.approvers.iter().any(|approver| approver == by));
            if !may_approve && !all {
                continue;
            }
            listed.push(json!({
                "run_id": run.id,
                "runbook": run.runbook,
                "rule": run.rule,
                "started_by": run.started_by,
                "target": run.target,
                "incident": run.incident_id,
                "params": run.plan.params,
                "dry_run": run.dry_run,
                "started_at": run.started_at,
                "step": approval.step,
                "approvers": approval.approvers,
                "message": approval.message,
                "deadline": approval.deadline,
                "then": steps_after(&run.plan.spec, &approval.step),
                "may_approve": may_approve,
            }));
        }
    }
    listed.sort_by(|a, b| {
        a["deadline"]
            .as_str()
            .cmp(&b["deadline"].as_str())
            .then(a["run_id"].as_str().cmp(&b["run_id"].as_str()))
    });
    Ok(listed)
}

/// What runs once the approval at `path` is given: the steps after it in its own list, as
/// `name (what)`. A nested approval (`fan.branch.step`) is looked up by its path.
fn steps_after(runbook: &Runbook, path: &str) -> Vec<String> {
    fn find<'a>(
        steps: &'a [homeostat_core::config::Step],
        path: &str,
    ) -> Option<&'a [homeostat_core::config::Step]> {
        if let Some(index) = steps.iter().position(|step| step.name == path) {
            return Some(&steps[index + 1..]);
        }
        let (head, rest) = path.split_once('.')?;
        let step = steps.iter().find(|step| step.name == head)?;
        if let Some(inner) = &step.steps {
            if let Some(found) = find(inner, rest) {
                return Some(found);
            }
        }
        let (branch, rest) = rest.split_once('.')?;
        let branch = step.parallel.as_ref()?.iter().find(|b| b.name == branch)?;
        find(&branch.steps, rest)
    }
    find(&runbook.steps, path)
        .unwrap_or_default()
        .iter()
        .map(|step| {
            let what = if let Some(action) = &step.action {
                action.clone()
            } else if step.parallel.is_some() {
                "parallel".into()
            } else if step.for_each.is_some() {
                "for_each".into()
            } else if let Some(runbook) = &step.runbook {
                format!("runbook {runbook}")
            } else if step.wait.is_some() {
                "wait".into()
            } else if step.approval.is_some() {
                "approval".into()
            } else {
                "assert".into()
            };
            format!("{} ({what})", step.name)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalBody {
    approve: bool,
    /// Which waiting approval; may be left out when only one waits.
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /api/v1/runs/{id}/approval`: approves or rejects a waiting approval step, as the calling
/// token. The answer is journaled by the run before it acts on it.
pub async fn approval(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let bytes = read_body(&handle, &headers, body).await?;
    let body: ApprovalBody = parse_json(&bytes)?;
    let step = answer(
        &handle,
        &id,
        body.step.as_deref(),
        &by,
        body.approve,
        body.comment,
    )
    .await?;
    Ok(Json(
        json!({ "run_id": id, "step": step, "approved": body.approve, "by": by }),
    ))
}

/// Gives `by`'s answer to the approval of run `id` waiting at `step` (or the only one waiting);
/// answers the step's path.
pub(crate) async fn answer(
    handle: &Handle,
    id: &str,
    step: Option<&str>,
    by: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<String, ApiError> {
    match handle.runs().approve(id, step, by, approve, comment) {
        Ok(step) => Ok(step),
        Err(runs::Error::NoApproval { .. }) => {
            let waiting: Vec<String> = handle
                .runs()
                .pending_approvals(id)
                .unwrap_or_default()
                .into_iter()
                .map(|approval| format!("`{}`", approval.step))
                .collect();
            let message = match step {
                Some(step) if !waiting.is_empty() => format!(
                    "run `{id}` has no approval waiting at step `{step}`; waiting: {}",
                    waiting.join(", ")
                ),
                _ => format!("run `{id}` has no approval waiting"),
            };
            Err(ApiError::new(Code::NoApprovalWaiting, message))
        }
        Err(error) => Err(run_error(handle, id, error).await),
    }
}

/// `POST /api/v1/runs/{id}/cancel`: asks a run to stop. Steps waiting on time or people end at once;
/// actions in flight are awaited, then the run ends `cancelled`.
pub async fn cancel(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    cancel_as(&handle, &id, &by).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run_id": id, "status": "cancelling", "by": by })),
    )
        .into_response())
}

/// Asks run `id` to stop, as `by`.
pub(crate) async fn cancel_as(handle: &Handle, id: &str, by: &str) -> Result<(), ApiError> {
    match handle.runs().cancel(id, by) {
        Ok(()) => Ok(()),
        Err(error) => Err(run_error(handle, id, error).await),
    }
}

/// Maps a refused input: a run that is not live is 404 when unknown, else 409 with how it ended.
async fn run_error(handle: &Handle, id: &str, error: runs::Error) -> ApiError {
    match error {
        runs::Error::NotRunning { .. } => match handle.store().run(id).await {
            Ok(None) => ApiError::new(Code::NotFound, format!("no run has the id `{id}`")),
            Ok(Some(run)) => ApiError::new(
                Code::RunNotRunning,
                format!(
                    "run `{id}` is not in progress; it is `{}`",
                    run.status.as_str()
                ),
            ),
            Err(_) => ApiError::new(
                Code::RunNotRunning,
                format!("run `{id}` is not in progress"),
            ),
        },
        runs::Error::NoApproval { .. } => ApiError::new(Code::NoApprovalWaiting, error.to_string()),
        runs::Error::NotApprover { .. } => ApiError::new(Code::NotAnApprover, error.to_string()),
        runs::Error::StarterMayNotApprove { .. } => {
            ApiError::new(Code::ApproverIsStarter, error.to_string())
        }
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::new(Code::InvalidPayload, format!("invalid body: {error}")))
}
