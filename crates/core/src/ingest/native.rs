//! homeostat's native event JSON, and CloudEvents 1.0 in structured JSON mode, at `POST /api/v1/events`.
//!
//! A body is one object or an array of objects. An object with `specversion` is a CloudEvent; anything
//! else is a native event.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{from_json, Error};
use crate::event::{fingerprint, new_id, Event, EventKind, Labels, Status};

/// A native event as a client sends it; everything but `labels` is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeEvent {
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub kind: EventKind,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub fingerprint: Option<String>,
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Labels,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// A CloudEvent in structured mode. Extension attributes `status`, `kind` and `fingerprint`, when
/// present, set the event's fields; `data.labels` (a string map) adds labels.
#[derive(Debug, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub kind: Option<EventKind>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// Parses a body of native events or CloudEvents.
pub fn parse(
    body: &[u8],
    default_source: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<Event>, Error> {
    let value: serde_json::Value = from_json(body)?;
    let (items, is_array) = match value {
        serde_json::Value::Array(items) => (items, true),
        other => (vec![other], false),
    };
    if items.is_empty() {
        return Err(Error::new(
            "(body)",
            "no events in the array; send at least one",
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let prefix = if is_array {
                format!("[{index}]")
            } else {
                String::new()
            };
            let bytes = serde_json::to_vec(&item).unwrap_or_default();
            let nest = |error: Error| {
                let field = if error.field == "(body)" {
                    prefix.clone()
                } else {
                    join(&prefix, &error.field)
                };
                Error::new(
                    if field.is_empty() {
                        "(body)".into()
                    } else {
                        field
                    },
                    error.message,
                )
            };
            if item.get("specversion").is_some() {
                let cloud: CloudEvent = from_json(&bytes).map_err(nest)?;
                from_cloud_event(cloud, received_at).map_err(nest)
            } else {
                let native: NativeEvent = from_json(&bytes).map_err(nest)?;
                from_native(native, default_source, received_at).map_err(nest)
            }
        })
        .collect()
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

fn from_native(
    native: NativeEvent,
    default_source: &str,
    received_at: DateTime<Utc>,
) -> Result<Event, Error> {
    if native.labels.is_empty() {
        return Err(Error::new("labels", "an event needs at least one label"));
    }
    refuse_command(native.kind)?;
    let fingerprint = native
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint(&native.labels));
    Ok(Event {
        id: new_id(received_at),
        source: native.source.unwrap_or_else(|| default_source.to_string()),
        kind: native.kind,
        status: native.status,
        fingerprint,
        labels: native.labels,
        annotations: native.annotations,
        starts_at: native.starts_at,
        ends_at: native.ends_at,
        received_at,
        data: native.data,
        ingested_by: None,
    })
}

/// Commands change incidents and carry who acted: they come only from homeostat's own endpoints.
fn refuse_command(kind: EventKind) -> Result<(), Error> {
    if kind == EventKind::Command {
        return Err(Error::new(
            "kind",
            "`command` events are made by homeostat itself; use `homeostat incidents ack|resolve` or the incident API, or send `alert`, `change` or `info`",
        ));
    }
    Ok(())
}

fn from_cloud_event(cloud: CloudEvent, received_at: DateTime<Utc>) -> Result<Event, Error> {
    if cloud.specversion != "1.0" {
        return Err(Error::new(
            "specversion",
            format!(
                "unsupported CloudEvents version `{}`; homeostat reads `1.0`",
                cloud.specversion
            ),
        ));
    }
    if cloud.id.is_empty() {
        return Err(Error::new("id", "a CloudEvent needs a non-empty `id`"));
    }
    refuse_command(cloud.kind.unwrap_or(EventKind::Info))?;
    let mut labels = Labels::new();
    if let Some(data_labels) = cloud
        .data
        .as_ref()
        .and_then(|data| data.get("labels"))
        .and_then(|v| v.as_object())
    {
        for (name, value) in data_labels {
            let Some(text) = value.as_str() else {
                return Err(Error::new(
                    format!("data.labels.{name}"),
                    "label values must be strings",
                ));
            };
            labels.insert(name.clone(), text.to_string());
        }
    }
    labels.insert("ce_type".into(), cloud.event_type.clone());
    labels.insert("ce_source".into(), cloud.source.clone());
    if let Some(subject) = &cloud.subject {
        labels.insert("ce_subject".into(), subject.clone());
    }
    let fingerprint = cloud
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint(&labels));
    Ok(Event {
        id: new_id(received_at),
        source: format!("cloudevents:{}", cloud.source),
        kind: cloud.kind.unwrap_or(EventKind::Info),
        status: cloud.status.unwrap_or_default(),
        fingerprint,
        labels,
        annotations: [("ce_id".to_string(), cloud.id)].into(),
        starts_at: cloud.time,
        ends_at: None,
        received_at,
        data: cloud.data,
        ingested_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[test]
    fn parses_native_events_single_and_batched() {
        let one = br#"{"labels": {"alertname": "X"}, "status": "resolved"}"#;
        let events = parse(one, "api", now()).unwrap();
        assert_eq!(events[0].status, Status::Resolved);
        assert_eq!(events[0].source, "api");
        let command = br#"{"labels": {"incident": "1"}, "kind": "command"}"#;
        let error = parse(command, "api", DateTime::UNIX_EPOCH).expect_err("refused");
        assert_eq!(error.field, "kind");
        let many = br#"[{"labels": {"a": "1"}}, {"labels": {"a": "2"}, "kind": "change"}]"#;
        let events = parse(many, "api", now()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, EventKind::Change);
    }

    #[test]
    fn parses_structured_cloud_events() {
        let body =
            br#"{"specversion": "1.0", "id": "42", "source": "/ci/deploy", "type": "dev.ci.deploy",
            "subject": "checkout", "kind": "change", "time": "2026-11-24T10:00:00Z",
            "data": {"labels": {"service": "checkout"}, "image": "v1.4.2"}}"#;
        let events = parse(body, "api", now()).unwrap();
        assert_eq!(events[0].kind, EventKind::Change);
        assert_eq!(events[0].labels["service"], "checkout");
        assert_eq!(events[0].labels["ce_type"], "dev.ci.deploy");
        assert_eq!(events[0].source, "cloudevents:/ci/deploy");
    }

    #[test]
    fn names_bad_fields_inside_arrays() {
        let body = br#"[{"labels": {"a": "1"}}, {"labels": {"a": 2}}]"#;
        assert_eq!(parse(body, "api", now()).unwrap_err().field, "[1].labels.a");
        let body = br#"{"labels": {"a": "1"}, "sevrity": "x"}"#;
        let error = parse(body, "api", now()).unwrap_err();
        assert!(error.message.contains("sevrity"), "{error}");
        let body = br#"{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}"#;
        assert_eq!(parse(body, "api", now()).unwrap_err().field, "specversion");
        assert_eq!(parse(b"[]", "api", now()).unwrap_err().field, "(body)");
    }
}
