//! The actions a step can run, as data. The engine executes them; this module only defines and checks them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::MaybeSecret;

/// One action with its inputs, after templating.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "with", rename_all = "snake_case")]
pub enum Action {
    /// Runs a program. Never through a shell unless `shell: true` says so.
    Exec(Exec),
    /// Sends one HTTP request and checks the status.
    HttpRequest(HttpRequest),
    /// Sends a notification through a configured notifier.
    Notify(Notify),
    /// Records a message in the run's journal; touches nothing outside homeostat.
    Log(Log),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Exec(_) => "exec",
            Action::HttpRequest(_) => "http_request",
            Action::Notify(_) => "notify",
            Action::Log(_) => "log",
        }
    }
}

/// The names `action:` accepts, for error hints.
pub const NAMES: &[&str] = &["exec", "http_request", "notify", "log"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The program and its arguments. With `shell: true`, exactly one string run by `/bin/sh -c`.
    pub command: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, MaybeSecret>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Captured stdout and stderr are each cut to this many bytes.
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
}

fn default_max_output_bytes() -> usize {
    64 * 1024
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, MaybeSecret>,
    /// A raw body; use `json` for a JSON one.
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Statuses that count as success; any 2xx when empty.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The name of a configured notifier.
    pub notifier: String,
    pub summary: String,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// `critical`, `error`, `warning` or `info` (PagerDuty's severities).
    #[serde(default = "default_severity")]
    pub severity: String,
    /// For PagerDuty: `trigger`, `acknowledge` or `resolve`.
    #[serde(default)]
    pub event_action: Option<String>,
    /// For PagerDuty: the incident key that links trigger and resolve. The run's key by default.
    #[serde(default)]
    pub dedup_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub message: String,
}

fn default_severity() -> String {
    "error".into()
}

/// A problem with a step's inputs, with the field path inside `with`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct Error {
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Parses an action name and its `with` inputs into an [`Action`], checking what can be checked
/// without IO.
pub fn parse(action: &str, with: &serde_json::Value) -> Result<Action, Error> {
    if !NAMES.contains(&action) {
        return Err(Error {
            field: "action".into(),
            message: format!("unknown action `{action}`"),
            hint: Some(format!("use one of {}", NAMES.join(", "))),
        });
    }
    let with = if with.is_null() {
        serde_json::json!({})
    } else {
        with.clone()
    };
    let tagged = serde_json::json!({ "action": action, "with": with });
    let parsed: Action = serde_path_to_error::deserialize(tagged).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // The path already ends in an unknown field's name when that is the problem.
        let field = path;
        Error {
            field,
            message,
            hint: None,
        }
    })?;
    validate(&parsed)?;
    Ok(parsed)
}

fn validate(action: &Action) -> Result<(), Error> {
    let fail = |field: &str, message: &str, hint: &str| {
        Err(Error {
            field: field.into(),
            message: message.into(),
            hint: Some(hint.into()),
        })
    };
    match action {
        Action::Exec(exec) if exec.command.is_empty() || exec.command[0].is_empty() => fail(
            "with.command",
            "the command is empty",
            "give the program and its arguments: `[systemctl, restart, api]`",
        ),
        Action::Exec(exec) if exec.shell && exec.command.len() != 1 => fail(
            "with.command",
            "with `shell: true` the command must be one string",
            "write `command: [\"cmd | other\"]`, or drop `shell` and list the arguments",
        ),
        Action::HttpRequest(request)
            if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
                .contains(&request.method.as_str()) =>
        {
            fail(
                "with.method",
                &format!("unknown method `{}`", request.method),
                "use GET, POST, PUT, PATCH, DELETE or HEAD",
            )
        }
        Action::HttpRequest(request) if request.body.is_some() && request.json.is_some() => fail(
            "with.body",
            "both `body` and `json` are set",
            "keep one of them",
        ),
        Action::Notify(notify)
            if notify
                .event_action
                .as_deref()
                .is_some_and(|a| !["trigger", "acknowledge", "resolve"].contains(&a)) =>
        {
            fail(
                "with.event_action",
                "unknown event action",
                "use trigger, acknowledge or resolve",
            )
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_action_and_names_bad_fields() {
        assert!(matches!(
            parse("exec", &json!({"command": ["true"]})),
            Ok(Action::Exec(_))
        ));
        assert!(matches!(
            parse("http_request", &json!({"url": "http://x"})),
            Ok(Action::HttpRequest(_))
        ));
        assert!(matches!(
            parse("notify", &json!({"notifier": "n", "summary": "s"})),
            Ok(Action::Notify(_))
        ));
        assert_eq!(
            parse("exec", &json!({"comand": ["x"]})).unwrap_err().field,
            "with.comand"
        );
        assert_eq!(
            parse("exec", &json!({"command": []})).unwrap_err().field,
            "with.command"
        );
        assert_eq!(
            parse("exec", &json!({"command": ["a", "b"], "shell": true}))
                .unwrap_err()
                .field,
            "with.command"
        );
        assert_eq!(parse("reboot", &json!({})).unwrap_err().field, "action");
        assert_eq!(
            parse("http_request", &json!({"url": "u", "method": "FETCH"}))
                .unwrap_err()
                .field,
            "with.method"
        );
    }
}
