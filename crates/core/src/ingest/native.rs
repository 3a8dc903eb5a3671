//! homeostat's native event JSON, and CloudEvents 1.0 in structured JSON mode ([`cloudevents`]),
//! at `POST /api/v1/events`.
//!
//! A body is one object or an array of objects; an empty array is an empty batch, accepted with
//! nothing in it (as the CloudEvents batch format allows). An object with `specversion` is a
//! CloudEvent; anything else is a native event.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{cloudevents, from_json, strict_labels, Error, StrictValue};
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
    #[serde(deserialize_with = "strict_labels")]
    pub labels: Labels,
    #[serde(default, deserialize_with = "strict_labels")]
    pub annotations: Labels,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// What a body may hold, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// Native events or CloudEvents, one or an array (`application/json`).
    #[default]
    Any,
    /// One structured-mode CloudEvent (`application/cloudevents+json`).
    CloudEvent,
    /// An array of CloudEvents (`application/cloudevents-batch+json`).
    CloudEventBatch,
}

impl Body {
    /// The body a `Content-Type` announces.
    pub fn from_content_type(content_type: Option<&str>) -> Body {
        let essence = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        match essence.as_deref() {
            Some("application/cloudevents+json") => Body::CloudEvent,
            Some("application/cloudevents-batch+json") => Body::CloudEventBatch,
            _ => Body::Any,
        }
    }
}

/// Parses a body of native events or CloudEvents.
pub fn parse(
    body: &[u8],
    default_source: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<Event>, Error> {
    parse_as(Body::Any, body, default_source, received_at)
}

/// Parses a body whose content type announced `kind`.
pub fn parse_as(
    kind: Body,
    body: &[u8],
    default_source: &str,
    received_at: DateTime<Utc>,
) -> Result<Vec<Event>, Error> {
    let StrictValue(value) = from_json(body)?;
    let (items, is_array) = match (kind, value) {
        (Body::CloudEvent, serde_json::Value::Array(_)) => {
            return Err(Error::new(
                "(body)",
                "an array under `application/cloudevents+json`; send a batch as `application/cloudevents-batch+json`",
            ))
        }
        (Body::CloudEventBatch, serde_json::Value::Array(items)) => (items, true),
        (Body::CloudEventBatch, _) => {
            return Err(Error::new(
                "(body)",
                "`application/cloudevents-batch+json` is a JSON array of CloudEvents",
            ))
        }
        (Body::Any, serde_json::Value::Array(items)) => (items, true),
        (_, other) => (vec![other], false),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let prefix = if is_array {
                format!("[{index}]")
            } else {
                String::new()
            };
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
            let cloud = kind != Body::Any || item.get("specversion").is_some();
            match item {
                serde_json::Value::Object(object) if cloud => {
                    cloudevents::parse_structured(object, received_at).map_err(nest)
                }
                _ if cloud => Err(nest(Error::new("(body)", "a CloudEvent is a JSON object"))),
                item => {
                    let native: NativeEvent = serde_path_to_error::deserialize(item)
                        .map_err(|error| {
                            let path = error.path().to_string();
                            let field = if path == "." { "(body)".into() } else { path };
                            Error::new(field, error.into_inner().to_string())
                        })
                        .map_err(nest)?;
                    from_native(native, default_source, received_at).map_err(nest)
                }
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
    if native.kind == EventKind::Command {
        return Err(Error::new(
            "kind",
            "`command` events are made by homeostat itself; use `homeostat incidents ack|resolve` or the incident API, or send `alert`, `change` or `info`",
        ));
    }
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
    fn strict_json_names_what_is_wrong() {
        let error = parse(br#"{"labels": {"a": "1"}} {"#, "api", now()).unwrap_err();
        assert_eq!(error.field, "(body)");
        assert!(
            error.message.contains("text after the JSON value"),
            "{error}"
        );
        let error = parse(br#"{"labels": {"a": "1", "a": "2"}}"#, "api", now()).unwrap_err();
        assert_eq!(error.field, "labels");
        assert!(error.message.contains("`a` is given twice"), "{error}");
        let error = parse(
            br#"{"labels": {"a": "1"}, "labels": {"b": "2"}}"#,
            "api",
            now(),
        )
        .unwrap_err();
        assert!(error.message.contains("`labels` is given twice"), "{error}");
        let error = parse(br#"[{"labels": {"": "1"}}]"#, "api", now()).unwrap_err();
        assert_eq!(error.field, "[0].labels");
        assert!(error.message.contains("name is empty"), "{error}");
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
        // An empty batch is a batch of nothing, as the CloudEvents batch format has it.
        assert!(parse(b"[]", "api", now()).unwrap().is_empty());
    }
}
