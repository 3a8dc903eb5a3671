//! Parsers that turn source payloads into [`Event`](crate::Event)s. Source-specific shapes stop here.

pub mod alertmanager;
pub mod cloudevents;
pub mod native;
pub mod webhook;

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::event::Labels;

/// A payload that could not be turned into events; `field` names where, so the sender can fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid payload at `{field}`: {message}")]
pub struct Error {
    pub field: String,
    pub message: String,
}

impl Error {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes JSON, reporting the path of the field that failed. Strict: text after the JSON
/// value is an error, and so is a key given twice where the payload type keeps a map
/// ([`strict_labels`], [`StrictValue`]); struct fields given twice are serde's own error.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    // Tracking the path costs about a tenth of ingest on well-formed payloads, where it is never
    // read: parse without it first (serde_json also refuses trailing text), and parse again with
    // it only to explain a failure. The second parse fails as the first did, at the same place.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        // serde_json appends " at line 1 column 9"; the field path says more for a JSON body.
        let message = match message.rfind(" at line ") {
            Some(index) if inner.is_data() => message[..index].to_string(),
            _ => message,
        };
        let field = if path == "." || path == "?" || path.is_empty() {
            "(body)".to_string()
        } else {
            path
        };
        Error::new(field, message)
    })?;
    deserializer.end().map_err(|error| {
        Error::new(
            "(body)",
            format!("text after the JSON value ({error}); send one JSON document"),
        )
    })?;
    Ok(value)
}

/// Labels or annotations as a payload gives them: a map of strings in which every name is
/// non-empty and given once. A map that names a label twice would otherwise keep the last value
/// silently.
pub(crate) fn strict_labels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Labels, D::Error> {
    struct LabelsVisitor;
    impl<'de> Visitor<'de> for LabelsVisitor {
        type Value = Labels;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of names to string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
            let mut labels = Labels::new();
            while let Some(name) = map.next_key::<String>()? {
                let value: String = map.next_value()?;
                if name.is_empty() {
                    return Err(de::Error::custom(
                        "a name is empty; every label and annotation needs a name",
                    ));
                }
                if labels.contains_key(&name) {
                    return Err(de::Error::custom(format!(
                        "`{name}` is given twice; give each name once"
                    )));
                }
                labels.insert(name, value);
            }
            Ok(labels)
        }
    }
    deserializer.deserialize_map(LabelsVisitor)
}

/// A JSON value read strictly: an object that gives a key twice is an error naming the key, where
/// `serde_json::Value` keeps the last one.
pub(crate) struct StrictValue(pub serde_json::Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(value.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "`{key}` is given twice; give each key once"
                )));
            }
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// Checks the names in a label or annotation map that did not come through [`strict_labels`].
pub(crate) fn check_names(field: &str, labels: &Labels) -> Result<(), Error> {
    if labels.contains_key("") {
        return Err(Error::new(
            field,
            "a name is empty; every label and annotation needs a name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    proptest! {
        /// Payloads come from the network: no body, however broken, makes a parser panic.
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let now = chrono::DateTime::UNIX_EPOCH;
            let _ = super::alertmanager::parse(&body, "am", now);
            let _ = super::native::parse(&body, "api", now);
        }

        /// Nor does a well-formed JSON document of the wrong shape.
        #[test]
        fn parsers_never_panic_on_json(value in json_value(3)) {
            let body = serde_json::to_vec(&value).expect("serializes");
            let now = chrono::DateTime::UNIX_EPOCH;
            let _ = super::alertmanager::parse(&body, "am", now);
            let _ = super::native::parse(&body, "api", now);
        }
    }

    fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z0-9 ]{0,8}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("4")),
            Just(serde_json::Value::from("firing")),
            Just(serde_json::Value::from("1.0")),
        ];
        leaf.prop_recursive(depth, 32, 6, |inner| {
            let keys = prop_oneof![
                Just("version".to_string()),
                Just("alerts".to_string()),
                Just("status".to_string()),
                Just("labels".to_string()),
                Just("specversion".to_string()),
                Just("id".to_string()),
                Just("source".to_string()),
                Just("type".to_string()),
                Just("startsAt".to_string()),
                "[a-z]{1,6}",
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(keys, inner, 0..5)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }
}
