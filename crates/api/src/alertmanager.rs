//! The parts of Alertmanager's API v2 that let homeostat stand in for an Alertmanager: Prometheus
//! posts its alerts (`POST /api/v2/alerts`), and `amtool` or Grafana's Alertmanager data source
//! read the alerts and manage silences, mapped onto homeostat's own events, incidents and silences.
//!
//! Authentication is homeostat's bearer tokens: the `ingest` scope to post alerts, `read` for every
//! `GET`, `write` to create or expire silences. Shapes follow Alertmanager's OpenAPI document
//! (`api/v2/openapi.yaml`); errors keep homeostat's `{message, code, type, link}`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use homeostat_core::config::Scope;
use homeostat_core::incident::silence::{Silence, SilenceState};
use homeostat_core::incident::{Command, Member};
use homeostat_core::ingest::alertmanager;
use homeostat_core::matcher::{self, Matcher, Op};
use homeostat_core::Status;
use homeostat_engine::Handle;
use homeostat_store::IncidentQuery;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};
use crate::incidents::command_error;
use crate::ingest::{commit, invalid, read_body};
use crate::read::store_error;
use crate::silences::{load, stored};

/// The source name of alerts posted to `/api/v2/alerts`.
pub const SOURCE: &str = "alertmanager_api";

/// The one receiver homeostat has: itself.
const RECEIVER: &str = "homeostat";

/// `POST /api/v2/alerts`: alerts as Prometheus sends them to an Alertmanager.
pub async fn post_alerts(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let token = authorize(&handle, &headers, Scope::Ingest)?;
    let bytes = read_body(&handle, &headers, body).await?;
    let events = alertmanager::parse_postable(&bytes, SOURCE, handle.clock().now())
        .map_err(|error| invalid(&handle, SOURCE, error))?;
    commit(&handle, SOURCE, token, events).await?;
    Ok(StatusCode::OK.into_response())
}

/// A query's other parameters, by name, in order.
type Flags = Vec<(String, String)>;

/// The query of `GET /api/v2/alerts` and `GET /api/v2/silences`: `filter` may repeat.
fn filters(query: Option<&str>) -> Result<(Vec<Matcher>, Flags), ApiError> {
    let mut matchers = Vec::new();
    let mut flags = Vec::new();
    for (name, value) in form_pairs(query.unwrap_or_default()) {
        if name == "filter" {
            let parsed = Matcher::parse(&value)
                .map_err(|error| ApiError::new(Code::InvalidQuery, format!("filter: {error}")))?;
            matchers.push(parsed);
        } else {
            flags.push((name, value));
        }
    }
    Ok((matchers, flags))
}

/// `application/x-www-form-urlencoded` pairs, `+` as a space.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_encoding::percent_decode_str(&text.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// A boolean query flag (`active`, `silenced`, ...), `default` when absent.
fn flag(flags: &[(String, String)], name: &str, default: bool) -> Result<bool, ApiError> {
    match flags.iter().rev().find(|(key, _)| key == name) {
        None => Ok(default),
        Some((_, value)) => value.parse().map_err(|_| {
            ApiError::new(
                Code::InvalidQuery,
                format!("`{name}` is `{value}`; use `true` or `false`"),
            )
        }),
    }
}

/// Firing members of open incidents: the alerts homeostat holds as active.
pub(crate) async fn active_alerts(handle: &Handle) -> Result<Vec<(Member, Value)>, ApiError> {
    let incidents = handle
        .store()
        .incidents(&IncidentQuery {
            limit: 1000,
            open_only: true,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    let mut alerts = Vec::new();
    for incident in incidents {
        let group = serde_json::to_value(&incident.labels).unwrap_or_default();
        for member in handle
            .store()
            .incident_members(incident.id)
            .await
            .map_err(store_error)?
        {
            if member.status == Status::Firing {
                alerts.push((member, group.clone()));
            }
        }
    }
    Ok(alerts)
}

fn gettable_alert(member: &Member) -> Value {
    let starts_at = member.starts_at.unwrap_or(member.first_seen);
    json!({
        "labels": member.labels,
        "annotations": member.annotations,
        "startsAt": rfc3339(starts_at),
        // Alertmanager's active alerts end in the future; homeostat holds them until resolved.
        "endsAt": "0001-01-01T00:00:00Z",
        "updatedAt": rfc3339(member.last_seen),
        "generatorURL": member.generator_url.clone().unwrap_or_default(),
        "fingerprint": member.fingerprint,
        "receivers": [{"name": RECEIVER}],
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []},
    })
}

/// Which alerts a `GET` asks for: silenced, inhibited and unprocessed alerts are never held as
/// active in homeostat (they open nothing), so asking only for those gives none.
fn wants_active(flags: &[(String, String)]) -> Result<bool, ApiError> {
    flag(flags, "active", true)
}

fn receiver_matches(flags: &[(String, String)]) -> Result<bool, ApiError> {
    match flags.iter().rev().find(|(key, _)| key == "receiver") {
        None => Ok(true),
        Some((_, pattern)) => regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(|regex| regex.is_match(RECEIVER))
            .map_err(|error| ApiError::new(Code::InvalidQuery, format!("receiver: {error}"))),
    }
}

/// `GET /api/v2/alerts`: the active alerts, narrowed by `filter` matchers.
pub async fn get_alerts(
    State(handle): State<Handle>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let (matchers, flags) = filters(query.as_deref())?;
    for name in ["silenced", "inhibited", "unprocessed"] {
        flag(&flags, name, true)?;
    }
    if !wants_active(&flags)? || !receiver_matches(&flags)? {
        return Ok(Json(json!([])));
    }
    let alerts: Vec<Value> = active_alerts(&handle)
        .await?
        .iter()
        .filter(|(member, _)| matcher::all_match(&matchers, &member.labels))
        .map(|(member, _)| gettable_alert(member))
        .collect();
    Ok(Json(Value::Array(alerts)))
}

/// `GET /api/v2/alerts/groups`: the active alerts grouped as homeostat groups them (by incident).
pub async fn get_alert_groups(
    State(handle): State<Handle>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let (matchers, flags) = filters(query.as_deref())?;
    if !wants_active(&flags)? || !receiver_matches(&flags)? {
        return Ok(Json(json!([])));
    }
    let mut groups: Vec<(Value, Vec<Value>)> = Vec::new();
    for (member, group) in active_alerts(&handle).await? {
        if !matcher::all_match(&matchers, &member.labels) {
            continue;
        }
        let alert = gettable_alert(&member);
        match groups.iter_mut().find(|(labels, _)| *labels == group) {
            Some((_, alerts)) => alerts.push(alert),
            None => groups.push((group, vec![alert])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(labels, alerts)| json!({"labels": labels, "receiver": {"name": RECEIVER}, "alerts": alerts}))
        .collect();
    Ok(Json(Value::Array(groups)))
}

/// `GET /api/v2/receivers`.
pub async fn get_receivers(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    Ok(Json(json!([{ "name": RECEIVER }])))
}

/// `GET /api/v2/status`: what `amtool` and Grafana read to know they talk to an Alertmanager.
pub async fn get_status(
    State(handle): State<Handle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    Ok(Json(json!({
        "cluster": {"status": "disabled", "peers": []},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "homeostat",
            "branch": "homeostat",
            "buildUser": "homeostat",
            "buildDate": "",
            "goVersion": "none (homeostat is written in Rust)",
        },
        "config": {"original": "# homeostat speaks Alertmanager's API v2; its config is homeostat's own\n"},
        "uptime": rfc3339(handle.clock().now()),
    })))
}

/// Alertmanager's structured matcher.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiMatcher {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<ApiMatcher>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    created_by: String,
    comment: String,
}

fn structured(silence: &Silence) -> Vec<Value> {
    silence
        .matchers
        .iter()
        .flat_map(|text| matcher::parse_list(text).unwrap_or_default())
        .map(|matcher| {
            json!({
                "name": matcher.name,
                "value": matcher.value,
                "isRegex": matcher.op.is_regex(),
                "isEqual": matcher.op.is_equal(),
            })
        })
        .collect()
}

fn gettable_silence(silence: &Silence, now: DateTime<Utc>) -> Value {
    let state = silence.state(now);
    let updated = match (state, &silence.expired_by) {
        (SilenceState::Expired, Some(_)) => silence.ends_at,
        _ => silence.created_at,
    };
    json!({
        "id": silence.id,
        "status": {"state": state.as_str()},
        "updatedAt": rfc3339(updated),
        "matchers": structured(silence),
        "startsAt": rfc3339(silence.starts_at),
        "endsAt": rfc3339(silence.ends_at),
        "createdBy": silence.created_by,
        "comment": silence.comment,
    })
}

/// `GET /api/v2/silences`: every silence, expired ones included, as Alertmanager lists them;
/// `filter` matchers match a silence whose own equality matchers give those labels.
pub async fn get_silences(
    State(handle): State<Handle>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let (matchers, _) = filters(query.as_deref())?;
    let now = handle.clock().now();
    let silences = handle
        .store()
        .silences(true, now)
        .await
        .map_err(store_error)?;
    let listed: Vec<Value> = silences
        .iter()
        .filter(|silence| {
            // As Alertmanager: the silence's matchers as a label set, name to value.
            let labels: homeostat_core::Labels = silence
                .matchers
                .iter()
                .flat_map(|text| matcher::parse_list(text).unwrap_or_default())
                .map(|matcher| (matcher.name, matcher.value))
                .collect();
            matcher::all_match(&matchers, &labels)
        })
        .map(|silence| gettable_silence(silence, now))
        .collect();
    Ok(Json(Value::Array(listed)))
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let silence = load(&handle, &id).await?;
    Ok(Json(gettable_silence(&silence, handle.clock().now())))
}

/// `POST /api/v2/silences`: creates a silence, or replaces the one `id` names; answers its id.
pub async fn post_silence(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let bytes = read_body(&handle, &headers, body).await?;
    let body: PostableSilence = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(Code::InvalidSilence, format!("invalid silence: {error}"))
    })?;
    let now = handle.clock().now();
    let mut texts = Vec::with_capacity(body.matchers.len());
    for (index, given) in body.matchers.iter().enumerate() {
        let op = Op::from_flags(given.is_regex, given.is_equal);
        let parsed = Matcher::new(&given.name, op, &given.value).map_err(|error| {
            ApiError::new(Code::InvalidSilence, format!("matchers[{index}]: {error}"))
        })?;
        texts.push(parsed.to_string());
    }
    let (id, created_at) = match body.id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => {
            let existing = load(&handle, id).await?;
            (existing.id, existing.created_at)
        }
        None => (homeostat_core::event::new_id(now), now),
    };
    let silence = Silence {
        id: id.clone(),
        matchers: texts,
        // As Alertmanager: a start in the past is now.
        starts_at: body.starts_at.max(now),
        ends_at: body.ends_at,
        created_by: body.created_by.trim().to_string(),
        comment: body.comment.trim().to_string(),
        created_at,
        expired_by: None,
    };
    silence
        .compile()
        .map_err(|error| ApiError::new(Code::InvalidSilence, error.to_string()))?;
    handle
        .command(Command::Silence { silence }, &by)
        .await
        .map_err(command_error)?;
    stored(&handle, &id).await?;
    Ok(Json(json!({ "silenceID": id })))
}

/// `DELETE /api/v2/silence/{id}`: expires the silence now.
pub async fn delete_silence(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let _expired = crate::silences::expire(State(handle), headers, Path(id)).await?;
    Ok(StatusCode::OK.into_response())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_as_forms() {
        let pairs = form_pairs("filter=alertname%3D%22A+B%22&filter=job%3D~%22x%22&active=true");
        assert_eq!(
            pairs,
            [
                ("filter".to_string(), "alertname=\"A B\"".to_string()),
                ("filter".to_string(), "job=~\"x\"".to_string()),
                ("active".to_string(), "true".to_string()),
            ]
        );
    }
}
