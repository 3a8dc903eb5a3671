//! Resolves secret references from the environment or files. Values never reach logs, the journal or the API.

use std::fmt;

use homeostat_core::config::{MaybeSecret, SecretRef};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "secret {reference} is not set; consider exporting `{name}` before starting homeostat"
    )]
    EnvMissing { reference: String, name: String },
    #[error("secret {reference} cannot be read: {message}")]
    FileUnreadable { reference: String, message: String },
    #[error("secret {reference} is empty")]
    Empty { reference: String },
}

/// A secret value. Its `Debug` and `Display` print a placeholder so it cannot leak through formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads a secret now. Files are read on every call so that rotated secrets take effect.
pub fn resolve(reference: &SecretRef) -> Result<Secret, Error> {
    let value = match reference {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| Error::EnvMissing {
            reference: reference.to_string(),
            name: name.clone(),
        })?,
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map_err(|error| Error::FileUnreadable {
                // The path tried, absolute, to tell where it was looked for.
                reference: format!(
                    "file `{}`",
                    std::path::absolute(path)
                        .unwrap_or_else(|_| path.clone())
                        .display()
                ),
                message: error.to_string(),
            })?
            // A trailing newline from `echo x > file` is not part of the secret.
            .trim_end_matches(['\n', '\r'])
            .to_string(),
    };
    if value.is_empty() {
        return Err(Error::Empty {
            reference: reference.to_string(),
        });
    }
    Ok(Secret(value))
}

/// Resolves a value that may be a secret reference.
pub fn resolve_maybe(value: &MaybeSecret) -> Result<Secret, Error> {
    match value {
        MaybeSecret::Plain(text) => Ok(Secret(text.clone())),
        MaybeSecret::Secret(reference) => resolve(reference),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_files_and_redacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "hunter2\n").unwrap();
        let secret = resolve(&SecretRef::File(path)).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(
            format!("{secret:?} {secret}"),
            "Secret(<redacted>) <redacted>"
        );
        let missing = resolve(&SecretRef::Env("HOMEOSTAT_TEST_SURELY_UNSET".into())).unwrap_err();
        assert!(missing.to_string().contains("consider exporting"));
    }
}
