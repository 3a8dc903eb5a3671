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
