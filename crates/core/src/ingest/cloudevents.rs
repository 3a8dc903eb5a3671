//! CloudEvents 1.0: the JSON event format (structured mode, one event or a batch) and the HTTP
//! binary mode (`ce-*` headers, the body as data).
//!
//! Every context attribute and every extension attribute is kept as an annotation `ce_<name>`, in
//! the attribute's canonical string form (integers in decimal, booleans as `true`/`false`), where
//! rules (`annotations.ce_region`), templates and the API read it. `type`, `source` and `subject`
//! are labels too (`ce_type`, `ce_source`, `ce_subject`), and `data.labels`, a string map, adds
//! labels. The data is the event's `data`: JSON as JSON, `data_base64` decoded (JSON when the
//! content type is JSON, else text, else kept as base64 with `ce_data_encoding: base64`).
//!
//! The identity of a CloudEvent is its `source` and `id`: the fingerprint hashes both, so two
//! events with different ids are two events, and a re-delivery of one is a repeat. The homeostat
//! extensions `kind`, `status` and `fingerprint` set those fields (a `fingerprint` lets a later
//! `status: resolved` event resolve an earlier firing one).

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::{check_names, Error};
use crate::event::{fingerprint, new_id, Event, EventKind, Labels, Status};

/// The annotation that holds a CloudEvent's `id`; the correlator takes an event that carries it
/// and repeats an earlier one's fingerprint as a re-delivery.
pub const ID_ANNOTATION: &str = "ce_id";

/// The only version understood.
pub const SPEC_VERSION: &str = "1.0";

/// Parses one structured-mode CloudEvent (a JSON object).
pub fn parse_structured(
    object: serde_json::Map<String, serde_json::Value>,
    received_at: DateTime<Utc>,
) -> Result<Event, Error> {
    let mut attributes = Attributes::default();
    let mut data = None;
    let mut data_base64 = None;
    for (name, value) in object {
        match name.as_str() {
            "data" => data = Some(value),
            "data_base64" => match value {
                serde_json::Value::String(text) => data_base64 = Some(text),
                serde_json::Value::Null => {}
                _ => {
                    return Err(Error::new(
                        "data_base64",
                        "must be a string of base64 (RFC 4648)",
                    ))
                }
            },
            _ => {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Bool(flag) => flag.to_string(),
                    // The type system's Integer: a whole number within 32 bits.
                    serde_json::Value::Number(number)
                        if number
                            .as_i64()
                            .is_some_and(|n| i32::try_from(n).is_ok()) =>
                    {
                        number.to_string()
                    }
                    // An attribute set to null is absent.
                    serde_json::Value::Null => continue,
                    _ => {
                        return Err(Error::new(
                            name,
                            "a CloudEvents attribute is a string, a boolean or an integer; put structured values in `data`",
                        ))
                    }
                };
                attributes.set(&name, text)?;
            }
        }
    }
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(Error::new(
                "data_base64",
                "`data` and `data_base64` are both given; send one",
            ))
        }
        (Some(data), None) => Some(data),
        (None, Some(encoded)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|error| {
                    Error::new(
                        "data_base64",
                        format!("is not base64 (RFC 4648, with padding): {error}"),
                    )
                })?;
            Some(attributes.decode_data(bytes, "data_base64")?)
        }
        (None, None) => None,
    };
    attributes.into_event(data, received_at)
}

/// Parses a binary-mode CloudEvent: its `ce-*` headers (names in any case) and its body.
/// `content_type` is the request's `Content-Type`, the event's `datacontenttype`.
pub fn parse_binary<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    content_type: Option<&str>,
    body: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Event, Error> {
    let mut attributes = Attributes::default();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let Some(attribute) = lower.strip_prefix("ce-") else {
            continue;
        };
        // The HTTP binding percent-encodes what a header cannot carry.
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| {
                Error::new(
                    format!("header {name}"),
                    "percent-encoded bytes that are not UTF-8",
                )
            })?
            .into_owned();
        attributes
            .set(attribute, value)
            .map_err(|error| Error::new(format!("header ce-{}", error.field), error.message))?;
    }
    if let Some(content_type) = content_type {
        attributes.set("datacontenttype", content_type.to_string())?;
    }
    let data = if body.is_empty() {
        None
    } else {
        Some(attributes.decode_data(body.to_vec(), "(body)")?)
    };
    attributes
        .into_event(data, received_at)
        .map_err(|error| match error.field.as_str() {
            "(body)" | "data" => error,
            field => Error::new(format!("header ce-{field}"), error.message),
        })
}

/// The attributes read so far, by name.
#[derive(Default)]
struct Attributes {
    values: Labels,
}

impl Attributes {
    fn set(&mut self, name: &str, value: String) -> Result<(), Error> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(Error::new(
                name,
                "is not a CloudEvents attribute name: names are lower-case letters and digits",
            ));
        }
        if self.values.insert(name.to_string(), value).is_some() {
            return Err(Error::new(name, "is given twice"));
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, Error> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            Some(_) => Err(Error::new(name, "is empty; a CloudEvent needs it")),
            None => Err(Error::new(
                name,
                "is missing; a CloudEvent needs `specversion`, `id`, `source` and `type`",
            )),
        }
    }

    /// Bytes of data as a JSON value: parsed when the content type is JSON, else text, else
    /// base64 (marked with `ce_data_encoding`).
    fn decode_data(&mut self, bytes: Vec<u8>, field: &str) -> Result<serde_json::Value, Error> {
        let is_json = self.get("datacontenttype").is_none_or(is_json_media_type);
        if is_json {
            if let Ok(super::StrictValue(value)) = super::from_json(&bytes) {
                return Ok(value);
            }
            if self.get("datacontenttype").is_some() {
                return Err(Error::new(
                    field,
                    "the content type says JSON, but the data is not one JSON document",
                ));
            }
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(text.into()),
            Err(error) => {
                self.values.insert("data_encoding".into(), "base64".into());
                Ok(base64::engine::general_purpose::STANDARD
                    .encode(error.into_bytes())
                    .into())
            }
        }
    }

    fn into_event(
        self,
        data: Option<serde_json::Value>,
        received_at: DateTime<Utc>,
    ) -> Result<Event, Error> {
        let version = self.required("specversion")?;
        if version != SPEC_VERSION {
            return Err(Error::new(
                "specversion",
                format!("unsupported CloudEvents version `{version}`; homeostat reads `1.0`"),
            ));
        }
        let id = self.required("id")?.to_string();
        let source = self.required("source")?.to_string();
        let event_type = self.required("type")?.to_string();
        let starts_at = match self.get("time") {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| {
                        Error::new("time", format!("`{text}` is not an RFC 3339 timestamp"))
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let kind = match self.get("kind") {
            None => EventKind::Info,
            Some("alert") => EventKind::Alert,
            Some("change") => EventKind::Change,
            Some("info") => EventKind::Info,
            Some("command") => return Err(Error::new(
                "kind",
                "`command` events are made by homeostat itself; use `homeostat incidents ack|resolve` or the incident API, or send `alert`, `change` or `info`",
            )),
            Some(other) => {
                return Err(Error::new(
                    "kind",
                    format!("`{other}` is not a kind; use `alert`, `change` or `info`"),
                ))
            }
        };
        let status = match self.get("status") {
            None | Some("firing") => Status::Firing,
            Some("resolved") => Status::Resolved,
            Some(other) => {
                return Err(Error::new(
                    "status",
                    format!("`{other}` is not a status; use `firing` or `resolved`"),
                ))
            }
        };
        let mut labels = Labels::new();
        if let Some(data_labels) = data
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
            check_names("data.labels", &labels)?;
        }
        labels.insert("ce_type".into(), event_type);
        labels.insert("ce_source".into(), source.clone());
        if let Some(subject) = self.get("subject") {
            labels.insert("ce_subject".into(), subject.to_string());
        }
        let fingerprint = match self.get("fingerprint") {
            Some(given) if !given.is_empty() => given.to_string(),
            // The identity is `source` and `id`, whatever the labels say.
            _ => fingerprint(&Labels::from([
                ("ce_id".to_string(), id),
                ("ce_source".to_string(), source.clone()),
            ])),
        };
        let annotations: Labels = self
            .values
            .into_iter()
            .map(|(name, value)| (format!("ce_{name}"), value))
            .collect();
        Ok(Event {
            id: new_id(received_at),
            source: format!("cloudevents:{source}"),
            kind,
            status,
            fingerprint,
            labels,
            annotations,
            starts_at,
            ends_at: None,
            received_at,
            data,
            ingested_by: None,
        })
    }
}

/// `application/json`, `text/json` and any `+json` type, parameters aside.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Whether a request's headers carry a binary-mode CloudEvent.
pub fn is_binary<'a>(mut header_names: impl Iterator<Item = &'a str>) -> bool {
    header_names.any(|name| name.eq_ignore_ascii_case("ce-specversion"))
}

/// The CloudEvents spec's own examples (`tests/data/cloudevents/examples.json`): every attribute
/// comes through, structured and binary mode agree, and what the spec calls invalid is refused
/// with its field.
#[cfg(test)]
mod spec_examples {
    use serde_json::Value;

    use super::*;

    fn examples() -> Value {
        serde_json::from_str(include_str!(
            "../../../../tests/data/cloudevents/examples.json"
        ))
        .expect("examples parse")
    }

    /// What a structured example must give as annotations: every non-null attribute, canonical.
    fn expected_annotations(example: &Value) -> Labels {
        example
            .as_object()
            .expect("an object")
            .iter()
            .filter(|(name, value)| !value.is_null() && *name != "data" && *name != "data_base64")
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (format!("ce_{name}"), text)
            })
            .collect()
    }

    fn expected_data(example: &Value) -> Option<Value> {
        if let Some(encoded) = example.get("data_base64").and_then(Value::as_str) {
            // Bytes that are not UTF-8 stay base64.
            return Some(encoded.into());
        }
        example.get("data").cloned()
    }

    fn check(example: &Value, event: &Event) {
        let mut expected = expected_annotations(example);
        if example.get("data_base64").is_some() {
            expected.insert("ce_data_encoding".into(), "base64".into());
        }
        assert_eq!(event.annotations, expected, "{example}");
        assert_eq!(event.data, expected_data(example), "{example}");
        assert_eq!(event.labels["ce_type"], example["type"].as_str().unwrap());
        assert_eq!(
            event.labels["ce_source"],
            example["source"].as_str().unwrap()
        );
        assert_eq!(
            event
                .starts_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            example["time"].as_str().map(str::to_string)
        );
    }

    #[test]
    fn every_structured_example_keeps_every_attribute() {
        let examples = examples();
        let now = DateTime::UNIX_EPOCH;
        let mut count = 0;
        for example in examples["structured"].as_array().unwrap() {
            let body = serde_json::to_vec(example).unwrap();
            let events = super::super::native::parse_as(
                super::super::native::Body::CloudEvent,
                &body,
                "api",
                now,
            )
            .unwrap_or_else(|error| panic!("{example}: {error}"));
            check(example, &events[0]);
            count += 1;
        }
        for batch in examples["batches"].as_array().unwrap() {
            let body = serde_json::to_vec(batch).unwrap();
            let events = super::super::native::parse_as(
                super::super::native::Body::CloudEventBatch,
                &body,
                "api",
                now,
            )
            .unwrap_or_else(|error| panic!("{batch}: {error}"));
            let batch = batch.as_array().unwrap();
            assert_eq!(events.len(), batch.len());
            for (example, event) in batch.iter().zip(&events) {
                check(example, event);
                count += 1;
            }
        }
        assert_eq!(count, 6);
    }

    #[test]
    fn binary_mode_gives_what_structured_mode_gives() {
        let examples = examples();
        let now = DateTime::UNIX_EPOCH;
        for binary in examples["binary"].as_array().unwrap() {
            let same_as = binary["same_as"].as_str().unwrap();
            let structured = examples["structured"]
                .as_array()
                .unwrap()
                .iter()
                .find(|example| example["id"] == same_as)
                .expect("its structured form");
            let headers: Vec<(String, String)> = binary["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_string()))
                .collect();
            let content_type = headers
                .iter()
                .find(|(name, _)| name == "content-type")
                .map(|(_, value)| value.as_str());
            let body = match binary.get("body_base64") {
                Some(encoded) => base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_str().unwrap())
                    .unwrap(),
                None => binary["body"].as_str().unwrap().as_bytes().to_vec(),
            };
            let event = parse_binary(
                headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                content_type,
                &body,
                now,
            )
            .unwrap_or_else(|error| panic!("{same_as}: {error}"));
            let from_structured =
                super::super::native::parse(&serde_json::to_vec(structured).unwrap(), "api", now)
                    .unwrap()
                    .remove(0);
            let mut annotations = from_structured.annotations.clone();
            // Binary mode states the implied `application/json` explicitly.
            annotations
                .entry("ce_datacontenttype".into())
                .or_insert_with(|| "application/json".into());
            assert_eq!(event.annotations, annotations, "{same_as}");
            assert_eq!(event.data, from_structured.data, "{same_as}");
            assert_eq!(event.labels, from_structured.labels, "{same_as}");
            assert_eq!(event.fingerprint, from_structured.fingerprint, "{same_as}");
        }
    }

    #[test]
    fn what_is_invalid_is_refused_with_its_field() {
        let examples = examples();
        for case in examples["refused"].as_array().unwrap() {
            let body = serde_json::to_vec(&case["event"]).unwrap();
            let error = super::super::native::parse(&body, "api", DateTime::UNIX_EPOCH)
                .expect_err(case["why"].as_str().unwrap());
            assert_eq!(
                error.field,
                case["field"].as_str().unwrap(),
                "{}: {error}",
                case["why"]
            );
        }
    }
}
