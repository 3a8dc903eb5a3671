//! The actions a step can run, as data. The engine executes them; this module only defines and checks them.

pub mod kubernetes;

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
    #[serde(rename = "kubernetes.rollout_restart")]
    KubernetesRolloutRestart(kubernetes::RolloutRestart),
    #[serde(rename = "kubernetes.scale")]
    KubernetesScale(kubernetes::Scale),
    #[serde(rename = "kubernetes.rollout_undo")]
    KubernetesRolloutUndo(kubernetes::RolloutUndo),
    #[serde(rename = "kubernetes.delete_pod")]
    KubernetesDeletePod(kubernetes::DeletePod),
    #[serde(rename = "kubernetes.cordon")]
    KubernetesCordon(kubernetes::NodeRef),
    #[serde(rename = "kubernetes.uncordon")]
    KubernetesUncordon(kubernetes::NodeRef),
    #[serde(rename = "kubernetes.drain")]
    KubernetesDrain(kubernetes::Drain),
    #[serde(rename = "kubernetes.patch")]
    KubernetesPatch(kubernetes::Patch),
    #[serde(rename = "kubernetes.wait_rollout")]
    KubernetesWaitRollout(kubernetes::WaitRollout),
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Exec(_) => "exec",
            Action::HttpRequest(_) => "http_request",
            Action::Notify(_) => "notify",
            Action::Log(_) => "log",
            Action::KubernetesRolloutRestart(_) => "kubernetes.rollout_restart",
            Action::KubernetesScale(_) => "kubernetes.scale",
            Action::KubernetesRolloutUndo(_) => "kubernetes.rollout_undo",
            Action::KubernetesDeletePod(_) => "kubernetes.delete_pod",
            Action::KubernetesCordon(_) => "kubernetes.cordon",
            Action::KubernetesUncordon(_) => "kubernetes.uncordon",
            Action::KubernetesDrain(_) => "kubernetes.drain",
            Action::KubernetesPatch(_) => "kubernetes.patch",
            Action::KubernetesWaitRollout(_) => "kubernetes.wait_rollout",
        }
    }

    /// Kubernetes actions run in dry runs too, with the API server's `dryRun=All`, so a dry run
    /// shows what the server would have done (and whether it would have refused).
    pub fn server_dry_run(&self) -> bool {
        is_kubernetes(self.name())
    }
}

/// Whether an action name is one of the Kubernetes actions.
pub fn is_kubernetes(name: &str) -> bool {
    name.starts_with("kubernetes.")
}

/// Actions that are safe to run again whatever an interrupted attempt did, because they change
/// nothing outside homeostat (`log`) or only read (`kubernetes.wait_rollout`). After a crash, a step
/// running one starts again on its own, as if it said `idempotent: true`, instead of stopping its run
/// in `needs_attention`.
pub fn idempotent_by_nature(action: &str) -> bool {
    matches!(action, "log" | "kubernetes.wait_rollout")
}

/// The inputs of an action that are URLs, whose templates encode the values they interpolate
/// (`crate::template::url`).
pub fn url_inputs(action: &str) -> &'static [&'static str] {
    match action {
        "http_request" => &["with.url"],
        _ => &[],
    }
}

/// The names `action:` accepts, for error hints.
pub const NAMES: &[&str] = &[
    "exec",
    "http_request",
    "notify",
    "log",
    "kubernetes.rollout_restart",
    "kubernetes.scale",
    "kubernetes.rollout_undo",
    "kubernetes.delete_pod",
    "kubernetes.cordon",
    "kubernetes.uncordon",
    "kubernetes.drain",
    "kubernetes.patch",
    "kubernetes.wait_rollout",
];

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
        Action::KubernetesScale(scale) => validate_scale(scale),
        Action::KubernetesPatch(patch) => validate_patch(patch),
        Action::KubernetesDrain(drain) => match drain.timeout_secs {
            kubernetes::Int::Value(secs) if secs <= 0 => fail(
                "with.timeout_secs",
                "`timeout_secs` must be positive",
                "give the seconds evictions may take, under the step's `timeout_secs`",
            ),
            _ => Ok(()),
        },
        Action::KubernetesWaitRollout(wait) if wait.poll_secs.is_nan() || wait.poll_secs <= 0.0 => {
            fail(
                "with.poll_secs",
                "`poll_secs` must be positive",
                "look every few seconds: `poll_secs: 2`",
            )
        }
        _ => Ok(()),
    }
}

fn validate_scale(scale: &kubernetes::Scale) -> Result<(), Error> {
    use kubernetes::Int::Value;
    let fail = |field: &str, message: String, hint: &str| {
        Err(Error {
            field: field.into(),
            message,
            hint: Some(hint.into()),
        })
    };
    for (field, value) in [
        ("with.replicas", &scale.replicas),
        ("with.min", &scale.min),
        ("with.max", &scale.max),
    ] {
        if let Value(number) = value {
            if *number < 0 || *number > i64::from(i32::MAX) {
                return fail(
                    field,
                    format!("`{}` must be a replica count, not {number}", &field[5..]),
                    "use a whole number from 0",
                );
            }
        }
    }
    if let (Value(min), Value(max)) = (&scale.min, &scale.max) {
        if min > max {
            return fail(
                "with.min",
                format!("`min` ({min}) is above `max` ({max})"),
                "set `min` at or below `max`",
            );
        }
    }
    Ok(())
}

fn validate_patch(patch: &kubernetes::Patch) -> Result<(), Error> {
    let fail = |field: &str, message: String, hint: &str| {
        Err(Error {
            field: field.into(),
            message,
            hint: Some(hint.into()),
        })
    };
    if !patch.env.is_empty() && !patch.kind.has_pod_template() {
        return fail(
            "with.env",
            format!(
                "a {} has no pod template to set `env` in",
                patch.kind.as_str()
            ),
            "set `env` on a Deployment, StatefulSet or DaemonSet",
        );
    }
    if patch.container.as_deref().is_some_and(|c| !c.is_empty()) && patch.env.is_empty() {
        return fail(
            "with.container",
            "`container` names where `env` goes, and `env` is empty".into(),
            "add `env`, or drop `container`",
        );
    }
    Ok(())
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
