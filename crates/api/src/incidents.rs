//! Incidents: list them, show one with its timeline in words and its context, acknowledge, resolve
//! and annotate it, and draft its postmortem.
//!
//! Reads come from the store. People's actions become [`Command`] events through
//! [`Handle::command`]: the correlator applies them in stream order, in the same commit, so the
//! incident is read back changed when the command returns.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use homeostat_core::config::Scope;
use homeostat_core::event::EventKind;
use homeostat_core::incident::correlate::Verdict as Correlation;
use homeostat_core::incident::{postmortem, Command, Incident, IncidentId, Member};
use homeostat_engine::{Handle, IngestError};
use homeostat_store::{EventQuery, IncidentQuery, JournalEntry, RunQuery, RunRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};
use crate::ingest::read_body;
use crate::read::{check_limit, next_cursor, numeric_cursor, store_error};
use crate::runbooks::parse_json;

/// How many runs of one incident are read for its context and postmortem.
const MAX_RUNS: usize = 1000;

/// How many recent changes and related incidents the context lists.
const MAX_CHANGES: usize = 20;
const MAX_RELATED: usize = 5;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    open: bool,
    #[serde(default = "default_limit")]
    limit: usize,
    /// `name=value`: only incidents grouped by this label value.
    label: Option<String>,
    /// The `next` of the previous page.
    before: Option<String>,
}

fn default_limit() -> usize {
    50
}

/// `GET /api/v1/incidents`: incidents, newest first.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let Query(query) =
        query.map_err(|error| ApiError::new(Code::InvalidQuery, error.body_text()))?;
    let label = query.label.as_deref().map(parse_label).transpose()?;
    let limit = check_limit(query.limit)?;
    let incidents = handle
        .store()
        .incidents(&IncidentQuery {
            limit,
            open_only: query.open,
            label,
            before_id: numeric_cursor(query.before.as_deref())?,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    let next = next_cursor(&incidents, limit, |incident| incident.id.to_string());
    Ok(Json(json!({ "incidents": incidents, "next": next })))
}

/// A `label` filter, `name=value`.
pub(crate) fn parse_label(text: &str) -> Result<(String, String), ApiError> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(ApiError::new(
            Code::InvalidQuery,
            format!("`label` is `{text}`; use `name=value`, such as `service=checkout`"),
        )),
    }
}

/// `GET /api/v1/incidents/{id}`: the incident, its members, its timeline in words and its context.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let id = parse_id(&id)?;
    let record = Record::read(&handle, id).await?;
    Ok(Json(json!({
        "incident": record.incident,
        "members": record.members,
        "timeline": record.timeline,
        "context": record.context,
    })))
}

/// `GET /api/v1/incidents/{id}/postmortem`: a blameless postmortem draft in Markdown.
pub async fn postmortem(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let markdown = postmortem_draft(&handle, parse_id(&id)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        markdown,
    )
        .into_response())
}

/// An incident's postmortem draft, in Markdown.
pub(crate) async fn postmortem_draft(handle: &Handle, id: IncidentId) -> Result<String, ApiError> {
    let record = Record::read(handle, id).await?;
    let items: Vec<postmortem::Item> = record
        .timeline
        .iter()
        .map(|item| postmortem::Item {
            at: item.at,
            kind: item.kind.clone(),
            summary: item.summary.clone(),
        })
        .collect();
    // Oldest first, as they happened. A dry run executed nothing, so it is no action taken; it
    // stays on the timeline.
    let actions: Vec<postmortem::Action> = record
        .runs
        .iter()
        .rev()
        .filter(|run| !run.dry_run)
        .map(|run| postmortem::Action {
            run_id: run.id.clone(),
            runbook: run.runbook.clone(),
            rule: run.rule.clone(),
            started_by: run.started_by.clone(),
            started_at: run.started_at,
            finished_at: run.finished_at,
            status: run.status.as_str().to_string(),
            error: run.error.clone(),
        })
        .collect();
    Ok(postmortem::render(
        &record.incident,
        &record.members,
        &items,
        &actions,
        &record.context.for_postmortem(),
        handle.clock().now(),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

/// `POST /api/v1/incidents/{id}/ack`: the calling token is on it.
pub async fn acknowledge(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let id = parse_id(&id)?;
    let body: CommentBody = optional_json(&read_body(&handle, &headers, body).await?)?;
    answer(act(&handle, id, &by, Act::Acknowledge(body.comment)).await)
}

/// `POST /api/v1/incidents/{id}/resolve`: the calling token says it is over.
pub async fn resolve(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let id = parse_id(&id)?;
    let body: CommentBody = optional_json(&read_body(&handle, &headers, body).await?)?;
    answer(act(&handle, id, &by, Act::Resolve(body.comment)).await)
}

/// `POST /api/v1/incidents/{id}/notes`: a line of free text on the timeline.
pub async fn note(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let id = parse_id(&id)?;
    let body: NoteBody = parse_json(&read_body(&handle, &headers, body).await?)?;
    answer(act(&handle, id, &by, Act::Note(body.text)).await)
}

fn answer(result: Result<Incident, ApiError>) -> Result<Json<Value>, ApiError> {
    result.map(|incident| Json(json!({ "incident": incident })))
}

/// What a person does to an incident, from the API or the dashboard.
pub(crate) enum Act {
    /// With an optional comment.
    Acknowledge(Option<String>),
    Resolve(Option<String>),
    Note(String),
}

/// Checks `act` against the incident as stored, submits it as `by`, and answers the incident as
/// it is after it.
pub(crate) async fn act(
    handle: &Handle,
    id: IncidentId,
    by: &str,
    act: Act,
) -> Result<Incident, ApiError> {
    let incident = load(handle, id).await?;
    let by = by.to_string();
    let command = match act {
        Act::Acknowledge(comment) => {
            if incident.is_resolved() {
                return Err(resolved(&incident, "acknowledged"));
            }
            if incident.acknowledged_at.is_some() {
                return Err(already_acknowledged(&incident));
            }
            Command::Acknowledge {
                incident: id,
                by: by.clone(),
                comment: clean(comment),
            }
        }
        Act::Resolve(comment) => {
            if incident.is_resolved() {
                return Err(resolved(&incident, "resolved again"));
            }
            Command::Resolve {
                incident: id,
                by: by.clone(),
                comment: clean(comment),
            }
        }
        Act::Note(text) => {
            let Some(text) = clean(Some(text)) else {
                return Err(ApiError::new(
                    Code::InvalidPayload,
                    "text: the note is empty; write what to record",
                ));
            };
            Command::Note {
                incident: id,
                by: by.clone(),
                text,
            }
        }
    };
    apply(handle, id, command, &by).await
}

/// Submits `command` and answers the incident as it is after it. The store was checked before, but
/// the correlator has the last word (another person may have acted in between, or a resolved
/// incident may be too old to change), and the writer says what it made of the command.
async fn apply(
    handle: &Handle,
    id: IncidentId,
    command: Command,
    by: &str,
) -> Result<Incident, ApiError> {
    let acknowledging = matches!(command, Command::Acknowledge { .. });
    let applied = handle.command(command, by).await.map_err(command_error)?;
    let incident = load(handle, id).await?;
    match applied.verdict {
        Correlation::Command { incident: applied } if applied == id => Ok(incident),
        _ if incident.is_resolved() => Err(resolved(&incident, "changed")),
        _ if acknowledging && incident.acknowledged_at.is_some() => {
            Err(already_acknowledged(&incident))
        }
        Correlation::Rejected { message } => Err(ApiError::new(Code::IncidentResolved, message)),
        other => Err(ApiError::new(
            Code::Internal,
            format!(
                "the correlator made `{}` of command event `{}` for incident {id}",
                other.label(),
                applied.event_id
            ),
        )),
    }
}

/// Maps a failure to put a command into the stream.
pub(crate) fn command_error(error: IngestError) -> ApiError {
    match error {
        IngestError::Overloaded => ApiError::new(
            Code::Overloaded,
            "too many requests are waiting for the journal; retry after a second",
        ),
        IngestError::Unavailable(message) => ApiError::new(Code::Unavailable, message),
    }
}

fn resolved(incident: &Incident, what: &str) -> ApiError {
    let by = incident
        .resolved_by
        .as_deref()
        .map(|by| format!(" by {by}"))
        .unwrap_or_default();
    ApiError::new(
        Code::IncidentResolved,
        format!(
            "incident {} is resolved{by}, so it cannot be {what}",
            incident.id
        ),
    )
}

fn already_acknowledged(incident: &Incident) -> ApiError {
    ApiError::new(
        Code::AlreadyAcknowledged,
        format!(
            "incident {} was already acknowledged by {}",
            incident.id,
            incident.acknowledged_by.as_deref().unwrap_or("someone")
        ),
    )
}

/// A body that may be empty.
fn optional_json<T: Default + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(bytes)
}

/// Trims text; blank is none.
fn clean(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

pub(crate) fn parse_id(text: &str) -> Result<IncidentId, ApiError> {
    text.parse::<IncidentId>().map_err(|_| {
        ApiError::new(
            Code::IncidentNotFound,
            format!("no incident has the id `{text}`; incidents are numbered from 1"),
        )
    })
}

async fn load(handle: &Handle, id: IncidentId) -> Result<Incident, ApiError> {
    handle
        .store()
        .incident(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                Code::IncidentNotFound,
                format!("no incident has the id `{id}`; see `GET /api/v1/incidents`"),
            )
        })
}

/// What the journal knows of one incident.
pub(crate) struct Record {
    pub incident: Incident,
    pub members: Vec<Member>,
    pub timeline: Vec<TimelineItem>,
    /// Its runs, newest first.
    pub runs: Vec<RunRecord>,
    pub context: Context,
}

impl Record {
    pub(crate) async fn read(handle: &Handle, id: IncidentId) -> Result<Self, ApiError> {
        let incident = load(handle, id).await?;
        let store = &handle.store();
        let members = store.incident_members(id).await.map_err(store_error)?;
        let entries = store.incident_timeline(id).await.map_err(store_error)?;
        let runs = store
            .runs(&RunQuery {
                limit: MAX_RUNS,
                incident: Some(id),
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        let context = Context::gather(handle, &incident, &members, &runs).await?;
        Ok(Self {
            timeline: entries.iter().map(TimelineItem::from_entry).collect(),
            incident,
            members,
            runs,
            context,
        })
    }
}

/// One line of an incident's timeline, in words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineItem {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// For a `decision` line, what became of its event, as the events API shows it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<homeostat_core::journal::EventVerdict>,
}

impl TimelineItem {
    pub fn from_entry(entry: &JournalEntry) -> Self {
        Self {
            seq: entry.seq,
            at: entry.at,
            kind: entry.entry.kind().to_string(),
            summary: entry.words(),
            event_id: entry.event_id.clone(),
            run_id: entry.run_id.clone(),
            verdicts: entry.entry.verdicts(),
        }
    }
}

/// What surrounded an incident: how to act on it, what changed, what happened before, what fired.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Context {
    runbooks: Vec<RunbookRef>,
    recent_changes: Vec<Change>,
    related: Vec<Related>,
    queries: Vec<String>,
}

/// A runbook that applies: one a linked run ran (with its rule), or one an alert links to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct RunbookRef {
    #[serde(skip_serializing_if = "Option::is_none")]
    runbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl RunbookRef {
    fn words(&self) -> String {
        match (&self.runbook, &self.rule, &self.url) {
            (_, _, Some(url)) => url.clone(),
            (Some(runbook), Some(rule), None) if *runbook == format!("rule:{rule}") => {
                format!("the steps of rule `{rule}`")
            }
            (Some(runbook), Some(rule), None) => format!("`{runbook}` (rule `{rule}`)"),
            (Some(runbook), None, None) => format!("`{runbook}`"),
            (None, _, None) => String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Change {
    at: DateTime<Utc>,
    summary: String,
    event_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
struct Related {
    id: IncidentId,
    title: String,
    state: String,
    opened_at: DateTime<Utc>,
}

impl Context {
    async fn gather(
        handle: &Handle,
        incident: &Incident,
        members: &[Member],
        runs: &[RunRecord],
    ) -> Result<Self, ApiError> {
        Ok(Self {
            runbooks: runbooks(members, runs),
            recent_changes: recent_changes(handle, incident, members).await?,
            related: related(handle, incident).await?,
            queries: queries(members),
        })
    }

    fn for_postmortem(&self) -> postmortem::Context {
        postmortem::Context {
            runbooks: self.runbooks.iter().map(RunbookRef::words).collect(),
            changes: self
                .recent_changes
                .iter()
                .map(|change| (change.at, change.summary.clone()))
                .collect(),
            related: self
                .related
                .iter()
                .map(|related| (related.id, related.title.clone(), related.opened_at))
                .collect(),
            queries: self.queries.clone(),
        }
    }
}

/// The runbooks of the incident's runs, oldest first, then those its alerts link to.
fn runbooks(members: &[Member], runs: &[RunRecord]) -> Vec<RunbookRef> {
    let mut refs: Vec<RunbookRef> = Vec::new();
    let mut push = |reference: RunbookRef| {
        if !refs.contains(&reference) {
            refs.push(reference);
        }
    };
    for run in runs.iter().rev() {
        push(RunbookRef {
            runbook: Some(run.runbook.clone()),
            rule: (!run.rule.is_empty()).then(|| run.rule.clone()),
            url: None,
        });
    }
    for member in members {
        for key in ["runbook_url", "runbook"] {
            let Some(value) = member.annotations.get(key).map(|value| value.trim()) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let link = value.contains("://");
            push(RunbookRef {
                runbook: (!link).then(|| value.to_string()),
                rule: None,
                url: link.then(|| value.to_string()),
            });
        }
    }
    refs
}

/// Change events of the incident's group (any of its grouping labels, or a member's `service`)
/// from `incidents.change_lookback_secs` before it began up to now, oldest first.
async fn recent_changes(
    handle: &Handle,
    incident: &Incident,
    members: &[Member],
) -> Result<Vec<Change>, ApiError> {
    let mut labels: BTreeSet<(String, String)> = incident
        .labels
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for member in members {
        if let Some(service) = member.labels.get("service") {
            labels.insert(("service".to_string(), service.clone()));
        }
    }
    let lookback = handle.compiled().config.incidents.change_lookback_secs;
    let since = i64::try_from(lookback)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|lookback| incident.started_at.checked_sub_signed(lookback))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut changes: Vec<Change> = Vec::new();
    for label in labels {
        let events = handle
            .store()
            .events(&EventQuery {
                limit: MAX_CHANGES,
                newest_first: true,
                kind: Some(EventKind::Change),
                received_after: Some(since),
                label: Some(label),
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        for record in events {
            let event = record.event;
            if changes.iter().any(|change| change.event_id == event.id) {
                continue;
            }
            changes.push(Change {
                at: event.starts_at.unwrap_or(event.received_at),
                summary: change_words(&event),
                event_id: event.id,
            });
        }
    }
    changes.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.event_id.cmp(&b.event_id)));
    let extra = changes.len().saturating_sub(MAX_CHANGES);
    changes.drain(..extra);
    Ok(changes)
}

/// A change event in words: its summary or description annotation, else where it came from and
/// its labels.
fn change_words(event: &homeostat_core::Event) -> String {
    for key in ["summary", "description", "message"] {
        if let Some(text) = event
            .annotations
            .get(key)
            .map(|text| text.trim())
            .filter(|text| !text.is_empty())
        {
            return text.to_string();
        }
    }
    let labels: Vec<String> = event
        .labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("change from `{}`: {}", event.source, labels.join(", "))
}

/// Other incidents of the same group, most recent first.
async fn related(handle: &Handle, incident: &Incident) -> Result<Vec<Related>, ApiError> {
    let incidents = handle
        .store()
        .incidents(&IncidentQuery {
            limit: MAX_RELATED + 1,
            group_key: Some(incident.group_key.clone()),
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    Ok(incidents
        .into_iter()
        .filter(|other| other.id != incident.id)
        .take(MAX_RELATED)
        .map(|other| Related {
            id: other.id,
            title: other.title,
            state: other.state.as_str().to_string(),
            opened_at: other.opened_at,
        })
        .collect())
}

/// The PromQL behind the alerts: Prometheus' `generatorURL` carries it as `g0.expr`; an alert may
/// also say it in a `query` or `expr` annotation.
fn queries(members: &[Member]) -> Vec<String> {
    let mut queries: Vec<String> = Vec::new();
    for member in members {
        let from_url = member
            .generator_url
            .as_deref()
            .map(expressions)
            .unwrap_or_default();
        let from_annotations = ["query", "expr"]
            .iter()
            .filter_map(|key| member.annotations.get(*key))
            .map(|text| text.trim().to_string());
        for query in from_url.into_iter().chain(from_annotations) {
            if !query.is_empty() && !queries.contains(&query) {
                queries.push(query);
            }
        }
    }
    queries
}

/// The `gN.expr` query parameters of a Prometheus graph URL, decoded, in order.
fn expressions(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| {
            key.strip_prefix('g')
                .and_then(|rest| rest.strip_suffix(".expr"))
                .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, value)| percent_decode(value))
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX` a byte. A malformed
/// escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match hex {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_come_from_the_generator_url() {
        assert_eq!(
            expressions(
                "http://prometheus:9090/graph?g0.expr=sum%28rate%28http_errors_total%5B5m%5D%29%29+%3E+1&g0.tab=1"
            ),
            ["sum(rate(http_errors_total[5m])) > 1"]
        );
        assert_eq!(
            expressions("http://p/graph?g0.tab=1&g1.expr=up+%3D%3D+0#x"),
            ["up == 0"]
        );
        assert!(expressions("http://p/graph").is_empty());
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
