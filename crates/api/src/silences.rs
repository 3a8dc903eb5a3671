//! Silences, with Alertmanager's semantics: list them, create one, expire one early.
//!
//! A silence reaches the correlator as a [`Command::Silence`] event, so it mutes from that point in
//! the stream on and a replay mutes the same events; the decide stage stores its row in the same
//! commit.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use homeostat_core::config::Scope;
use homeostat_core::incident::silence::{Silence, SilenceState};
use homeostat_core::incident::Command;
use homeostat_engine::Handle;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{ApiError, Code};
use crate::incidents::command_error;
use crate::ingest::read_body;
use crate::read::store_error;
use crate::runbooks::parse_json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    expired: bool,
}

/// `GET /api/v1/silences`: pending and active silences, newest first; with `expired=true`, expired
/// ones too.
pub async fn list(
    State(handle): State<Handle>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let Query(query) =
        query.map_err(|error| ApiError::new(Code::InvalidQuery, error.body_text()))?;
    let now = handle.clock().now();
    let silences = handle
        .store()
        .silences(query.expired, now)
        .await
        .map_err(store_error)?;
    let silences: Vec<Value> = silences.iter().map(|silence| shown(silence, now)).collect();
    Ok(Json(json!({ "silences": silences })))
}

/// `GET /api/v1/silences/{id}`.
pub async fn show(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read)?;
    let silence = load(&handle, &id).await?;
    Ok(Json(
        json!({ "silence": shown(&silence, handle.clock().now()) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    // Missing fields are left to `Silence::compile`, whose messages name them.
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    ends_at: Option<DateTime<Utc>>,
    /// `2h`, `90m`, `1h30m`, `1d`: the end, counted from the start.
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/silences`: creates a silence for the calling token.
pub async fn create(
    State(handle): State<Handle>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let body: CreateBody = parse_json(&read_body(&handle, &headers, body).await?)?;
    let stored = create_as(&handle, &by, body.into()).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/silences/{}", stored.id))],
        Json(json!({ "silence": shown(&stored, handle.clock().now()) })),
    )
        .into_response())
}

/// What a person asks for in a new silence, from the API or the dashboard.
#[derive(Debug, Default)]
pub(crate) struct NewSilence {
    pub matchers: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// `2h`, `90m`, `1h30m`, `1d`: the end, counted from the start.
    pub duration: Option<String>,
    pub comment: String,
}

impl From<CreateBody> for NewSilence {
    fn from(body: CreateBody) -> Self {
        Self {
            matchers: body.matchers,
            starts_at: body.starts_at,
            ends_at: body.ends_at,
            duration: body.duration,
            comment: body.comment,
        }
    }
}

/// Creates a silence for `by`; answers it as stored.
pub(crate) async fn create_as(
    handle: &Handle,
    by: &str,
    new: NewSilence,
) -> Result<Silence, ApiError> {
    let now = handle.clock().now();
    // As Alertmanager: a start in the past is now.
    let starts_at = new.starts_at.map_or(now, |start| start.max(now));
    let ends_at =
        match (new.ends_at, new.duration.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "duration: give `ends_at` or `duration`, not both".to_string(),
                ))
            }
            (Some(ends_at), None) => ends_at,
            (None, Some(text)) => starts_at
                .checked_add_signed(parse_duration(text).map_err(invalid)?)
                .ok_or_else(|| invalid(format!("duration: `{text}` ends past the calendar")))?,
            (None, None) => return Err(invalid(
                "ends_at: say when the silence ends, as `ends_at` or a `duration` such as \"2h\""
                    .to_string(),
            )),
        };
    let silence = Silence {
        id: homeostat_core::event::new_id(now),
        matchers: new
            .matchers
            .iter()
            .map(|matcher| matcher.trim().to_string())
            .collect(),
        starts_at,
        ends_at,
        created_by: by.to_string(),
        comment: new.comment.trim().to_string(),
        created_at: now,
        expired_by: None,
    };
    silence
        .compile()
        .map_err(|error| invalid(error.to_string()))?;
    let id = silence.id.clone();
    handle
        .command(Command::Silence { silence }, by)
        .await
        .map_err(command_error)?;
    stored(handle, &id).await
}

/// `DELETE /api/v1/silences/{id}`: expires the silence now, for the calling token.
pub async fn expire(
    State(handle): State<Handle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&handle, &headers, Scope::Write)?;
    let stored = expire_as(&handle, &id, &by).await?;
    Ok(Json(
        json!({ "silence": shown(&stored, handle.clock().now()) }),
    ))
}

/// Expires silence `id` now, for `by`; answers it as stored.
pub(crate) async fn expire_as(handle: &Handle, id: &str, by: &str) -> Result<Silence, ApiError> {
    let silence = load(handle, id).await?;
    let now = handle.clock().now();
    if silence.state(now) == SilenceState::Expired {
        let by = silence
            .expired_by
            .as_deref()
            .map(|by| format!(" (by {by})"))
            .unwrap_or_default();
        return Err(ApiError::new(
            Code::SilenceExpired,
            format!(
                "silence `{id}` already expired at {}{by}",
                silence.ends_at.to_rfc3339()
            ),
        ));
    }
    // `Silence::compile` wants the end after the start, so a pending silence (or one created in
    // this same millisecond) gets a start just before now: it ends before anything received after
    // this command.
    let starts_at = silence.starts_at.min(now - Duration::milliseconds(1));
    let expired = Silence {
        starts_at,
        ends_at: now,
        expired_by: Some(by.to_string()),
        ..silence
    };
    expired
        .compile()
        .map_err(|error| ApiError::new(Code::Internal, format!("expiring `{id}`: {error}")))?;
    handle
        .command(Command::Silence { silence: expired }, by)
        .await
        .map_err(command_error)?;
    stored(handle, id).await
}

/// The silence as the API shows it: its fields and its `state` now.
pub(crate) fn shown(silence: &Silence, now: DateTime<Utc>) -> Value {
    let mut value = serde_json::to_value(silence).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert("state".into(), silence.state(now).as_str().into());
    }
    value
}

fn invalid(message: String) -> ApiError {
    ApiError::new(Code::InvalidSilence, message)
}

pub(crate) async fn load(handle: &Handle, id: &str) -> Result<Silence, ApiError> {
    handle
        .store()
        .silence(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                Code::SilenceNotFound,
                format!("no silence has the id `{id}`; see `GET /api/v1/silences?expired=true`"),
            )
        })
}

/// The silence the command stored: the decide stage writes the row in the command's commit, so it
/// is there unless the correlator refused it.
pub(crate) async fn stored(handle: &Handle, id: &str) -> Result<Silence, ApiError> {
    handle
        .store()
        .silence(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                Code::Internal,
                format!("silence `{id}` was committed but not stored; the correlator refused it"),
            )
        })
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `1d`: numbers each followed by `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "duration: `{text}` is not a duration; use numbers with s, m, h or d, such as \"2h\" or \"1h30m\""
        )
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for character in trimmed.chars() {
        if character.is_ascii_digit() {
            number.push(character);
            continue;
        }
        let unit: i64 = match character {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: i64 = number.parse().map_err(|_| bad())?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("duration: `{text}` is zero; give a positive one"));
    }
    // chrono's `Duration` holds at most about 292 million years; a silence that long is a typo.
    if total > 100 * 365 * 86_400 {
        return Err(format!(
            "duration: `{text}` is over a hundred years; give a shorter one"
        ));
    }
    Ok(Duration::seconds(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_s_m_h_d_suffixes() {
        assert_eq!(parse_duration("2h"), Ok(Duration::hours(2)));
        assert_eq!(parse_duration("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration(" 45s "), Ok(Duration::seconds(45)));
        assert_eq!(parse_duration("1d"), Ok(Duration::days(1)));
        for bad in [
            "",
            "2",
            "h",
            "2x",
            "1.5h",
            "-1h",
            "0m",
            "99999999999999999999h",
        ] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.starts_with("duration: "), "{bad}: {error}");
        }
    }
}
