//! Parsers that turn source payloads into [`Event`](crate::Event)s. Source-specific shapes stop here.

pub mod alertmanager;
pub mod native;
pub mod webhook;

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

/// Deserializes JSON, reporting the path of the field that failed.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
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
    })
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
