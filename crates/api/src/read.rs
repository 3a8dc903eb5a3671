//! Read endpoints: events, runs and their journals.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use std::collections::HashMap;

use homeostat_core::config::Scope;
use homeostat_core::journal::{verdicts, EventVerdict};
use homeostat_engine::Handle;
use homeostat_store::{steps_from_journal, EventQuery, RunQuery, RunStatus};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};

pub(crate) fn store_error(error: homeostat_store::Error) -> ApiError {
    ApiError::new(Code::Unavailable, error.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    source: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
}

fn default_limit() -> usize {
    50
}

pub(crate) fn check_limit(limit: usize) -> Result<usize, ApiError> {
    if limit == 0 || limit > 1000 {
        return Err(ApiError::new(
            Code::InvalidQuery,
            format!("`limit` is {limit}; use 1 to 1000"),
        ));
    }
    Ok(limit)
}

/// A list page's cursor: the `next` a full page carries, given back as `before` for the page
/// after it. Reading a page costs the same at any depth, as each cursor is a key of an index.
pub(crate) fn next_cursor<T>(page: &[T], limit: usize, cursor: impl Fn(&T) -> String) -> Value {
    match page.last() {
        Some(last) if page.len() == limit => Value::String(cursor(last)),
        _ => Value::Null,
    }
}

/// A numeric cursor (an event's sequence number, an incident's number) read back from `before`.
pub(crate) fn numeric_cursor(before: Option<&str>) -> Result<Option<i64>, ApiError> {
    before
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!("`before` is `{text}`; give back the `next` of the previous page"),
                )
            })
        })
        .transpose()
}

pub async fn list_events(
    State(handle): State<Handle>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let Query(query) =
        query.map_err(|error| ApiError::new(Code::InvalidQuery, error.body_text()))?;
    let limit = check_limit(query.limit)?;
    let events = handle
        .store()
        .events(&EventQuery {
            limit,
            source: query.source,
            newest_first: true,
            before_seq: numeric_cursor(query.before.as_deref())?,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    let ids: Vec<String> = events
        .iter()
        .map(|record| record.event.id.clone())
        .collect();
    let decisions = handle
        .store()
        .decisions_for_events(&ids)
        .await
        .map_err(store_error)?;
    let mut verdicts: HashMap<&str, Vec<EventVerdict>> = HashMap::new();
    for entry in &decisions {
        if let Some(id) = entry.event_id.as_deref() {
            verdicts
                .entry(id)
                .or_default()
                .extend(entry.entry.verdicts());
        }
    }
    let next = next_cursor(&events, limit, |event| event.seq.to_string());
    let events: Vec<Value> = events
        .iter()
        .map(|record| {
            with_verdicts(
                record,
                verdicts
                    .remove(record.event.id.as_str())
                    .unwrap_or_default(),
            )
        })
        .collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

/// An event as the API shows it: its fields, and `verdicts`, what became of it.
fn with_verdicts(record: &homeostat_store::EventRecord, verdicts: Vec<EventVerdict>) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("verdicts".into(), json!(verdicts));
    }
    value
}

pub async fn get_event(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let event = handle.store().event(&id).await.map_err(store_error)?;
    let Some(event) = event else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no event has the id `{id}`"),
        ));
    };
    let journal = handle
        .store()
        .journal_for_event(&id)
        .await
        .map_err(store_error)?;
    let event = with_verdicts(&event, verdicts(&journal));
    Ok(Json(json!({ "event": event, "journal": journal })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    status: Option<String>,
    rule: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
}

/// A run's place in the list (newest first), as a cursor: its start in milliseconds and its id.
pub(crate) fn run_cursor(run: &homeostat_store::RunRecord) -> String {
    format!("{}_{}", run.started_at.timestamp_millis(), run.id)
}

pub(crate) fn parse_run_cursor(
    text: &str,
) -> Result<(chrono::DateTime<chrono::Utc>, String), ApiError> {
    text.split_once('_')
        .and_then(|(millis, id)| {
            let millis = millis.parse::<i64>().ok()?;
            Some((
                chrono::DateTime::from_timestamp_millis(millis)?,
                id.to_string(),
            ))
        })
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidQuery,
                format!("`before` is `{text}`; give back the `next` of the previous page"),
            )
        })
}

pub async fn list_runs(
    State(handle): State<Handle>,
    headers: HeaderMap,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let Query(query) =
        query.map_err(|error| ApiError::new(Code::InvalidQuery, error.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<RunStatus>()
                .map_err(|message| ApiError::new(Code::InvalidQuery, message))?,
        ),
    };
    let limit = check_limit(query.limit)?;
    let before = query.before.as_deref().map(parse_run_cursor).transpose()?;
    let runs = handle
        .store()
        .runs(&RunQuery {
            limit,
            status,
            rule: query.rule,
            before,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    let next = next_cursor(&runs, limit, run_cursor);
    Ok(Json(json!({ "runs": runs, "next": next })))
}

pub async fn get_run(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    run_view(&handle, &id).await.map(Json)
}

/// A run with its steps, how it ended and its waiting approvals, as `GET /api/v1/runs/{id}`
/// answers it and the dashboard shows it.
pub(crate) async fn run_view(handle: &Handle, id: &str) -> Result<Value, ApiError> {
    let id = id.to_string();
    // Read the live approvals before the journal: an approval becomes pending only after its step
    // was journaled, so read in this order every approval shown has its step in `steps`.
    let mut pending_approvals = handle.runs().pending_approvals(&id).unwrap_or_default();
    let Some(run) = handle.store().run(&id).await.map_err(store_error)? else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no run has the id `{id}`"),
        ));
    };
    let journal = handle
        .store()
        .journal_for_run(&id)
        .await
        .map_err(store_error)?;
    let steps = steps_from_journal(&journal);
    // How the run ended, with the steps its rollbacks undid; `null` while it runs.
    let end = journal.iter().rev().find_map(|entry| match &entry.entry {
        homeostat_store::Entry::RunFinished(_) => Some(entry.body()),
        _ => None,
    });
    // The live approvals may be older than the journal read after them: keep only those whose
    // step the journal still shows waiting, so an ended run or an answered step shows none.
    pending_approvals.retain(|approval| {
        end.is_none()
            && steps
                .iter()
                .rev()
                .find(|record| record.step == approval.step)
                .is_some_and(|record| record.status == "waiting")
    });
    Ok(json!({
        "run": run,
        "steps": steps,
        "end": end,
        "pending_approvals": pending_approvals,
        "journal": journal,
    }))
}
