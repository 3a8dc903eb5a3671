//! What a step does, in words, read from the inputs its `step_started` entry journaled: the
//! rendered command, request or Kubernetes change, so a dry run shows what would have run.
//!
//! Read from the journal rather than stored beside it: the inputs are the record, and a journal
//! written by an earlier version reads in today's words.

use serde_json::Value;

use crate::action::{self, Action, KubeAction};
use crate::config::Check;

/// The inputs a step started with, in words: `run `systemctl restart api``, `POST https://...`,
/// `patch Deployment `shop/web`: set label `tier=web``. None when they say nothing to add (a
/// `log` with no message, a step kind this version does not know).
pub fn step_summary(action: &str, inputs: &Value) -> Option<String> {
    if let Some(error) = inputs.get("unrendered").and_then(Value::as_str) {
        return Some(format!("{action}, not rendered before the run: {error}"));
    }
    match action {
        "wait" => wait(inputs),
        "approval" => Some(approval(inputs)),
        "assert" => check(inputs.get("check")?).map(|check| format!("check that {check}")),
        "runbook" => Some(call(inputs)),
        "parallel" => {
            let branches = names(inputs.get("branches")?.as_array()?);
            Some(format!("run branches {branches} at once"))
        }
        "for_each" => {
            let items = inputs.get("items")?.as_array()?;
            let concurrency = inputs.get("concurrency").and_then(Value::as_u64);
            Some(format!(
                "run its steps for {} item{}{}",
                items.len(),
                plural(items.len()),
                concurrency
                    .map(|limit| format!(", {limit} at a time"))
                    .unwrap_or_default()
            ))
        }
        _ => {
            // A condition the dry run could not evaluate is noted beside the action's inputs.
            let mut with = inputs.clone();
            if let Some(map) = with.as_object_mut() {
                map.remove("condition");
            }
            action::parse(action, &with)
                .ok()
                .map(|parsed| words(&parsed))
        }
    }
}

/// An action in words, as an imperative: "run ...", "POST ...", "scale ...".
pub fn words(action: &Action) -> String {
    match action {
        Action::Exec(exec) => {
            let command = if exec.shell {
                format!("`{}` in a shell", exec.command.join(" "))
            } else {
                format!(
                    "`{}`",
                    exec.command
                        .iter()
                        .map(|argument| shell_quoted(argument))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            };
            let mut words = format!("run {command}");
            if let Some(directory) = &exec.working_dir {
                words.push_str(&format!(" in `{directory}`"));
            }
            if !exec.env.is_empty() {
                // Names only: a value may be a secret's reference, and the names say enough.
                let names: Vec<String> = exec.env.keys().map(|name| format!("`{name}`")).collect();
                words.push_str(&format!(" with {} set", names.join(", ")));
            }
            words
        }
        Action::HttpRequest(request) => {
            let mut words = format!("{} {}", request.method, request.url);
            if let Some(json) = &request.json {
                words.push_str(&format!(" with the JSON body {json}"));
            } else if let Some(body) = &request.body {
                words.push_str(&format!(
                    " with a body of {} byte{}",
                    body.len(),
                    plural(body.len())
                ));
            }
            words
        }
        Action::Notify(notify) => format!(
            "notify `{}` ({}): {}",
            notify.notifier, notify.severity, notify.summary
        ),
        Action::Log(log) => format!("log: {}", log.message),
        Action::Kubernetes(action) => kubernetes(action),
    }
}

fn kubernetes(action: &KubeAction) -> String {
    let object = |kind: &str, namespace: &Option<String>, name: &str| match namespace {
        Some(namespace) => format!("{kind} `{namespace}/{name}`"),
        None => format!("{kind} `{name}` in the default namespace"),
    };
    let int = |value: &action::kubernetes::Int| match value {
        action::kubernetes::Int::Value(number) => number.to_string(),
        action::kubernetes::Int::Template(text) => text.clone(),
    };
    match action {
        KubeAction::RolloutRestart(restart) => format!(
            "restart every pod of {} (patch its pod template's `kubectl.kubernetes.io/restartedAt`)",
            object(restart.kind.as_str(), &restart.namespace, &restart.name)
        ),
        KubeAction::Scale(scale) => format!(
            "scale {} to {} replicas (kept within {} to {})",
            object(scale.kind.as_str(), &scale.namespace, &scale.name),
            int(&scale.replicas),
            int(&scale.min),
            int(&scale.max)
        ),
        KubeAction::RolloutUndo(undo) => format!(
            "roll {} back to {}",
            object("Deployment", &undo.namespace, &undo.name),
            match &undo.to_revision {
                Some(revision) => format!("revision {}", int(revision)),
                None => "its previous revision".to_string(),
            }
        ),
        KubeAction::DeletePod(pod) => format!(
            "delete {}{}",
            object("Pod", &pod.namespace, &pod.name),
            pod.grace_period_secs
                .as_ref()
                .map(|secs| format!(" with a grace period of {} s", int(secs)))
                .unwrap_or_default()
        ),
        KubeAction::Cordon(node) => format!("cordon Node `{}`", node.node),
        KubeAction::Uncordon(node) => format!("uncordon Node `{}`", node.node),
        KubeAction::Drain(drain) => format!(
            "drain Node `{}`: cordon it, then evict its pods for up to {} s",
            drain.node,
            int(&drain.timeout_secs)
        ),
        KubeAction::Patch(patch) => {
            let mut changes = Vec::new();
            for (what, map) in [
                ("label", &patch.labels),
                ("annotation", &patch.annotations),
                ("env", &patch.env),
            ] {
                for (key, value) in &map.0 {
                    changes.push(match value {
                        Some(value) => format!("set {what} `{key}={value}`"),
                        None => format!("remove {what} `{key}`"),
                    });
                }
            }
            if !patch.env.is_empty() {
                changes.push(match &patch.container {
                    Some(container) => format!("in container `{container}`"),
                    None => "in every container".to_string(),
                });
            }
            format!(
                "patch {}: {}",
                object(patch.kind.as_str(), &patch.namespace, &patch.name),
                changes.join(", ")
            )
        }
        KubeAction::WaitRollout(wait) => format!(
            "wait for the rollout of {} to complete",
            object(wait.kind.as_str(), &wait.namespace, &wait.name)
        ),
    }
}

fn wait(inputs: &Value) -> Option<String> {
    if let Some(seconds) = inputs.get("duration_secs").and_then(Value::as_f64) {
        return Some(format!("wait {seconds} s"));
    }
    let check = check(inputs.get("until")?)?;
    let mut words = format!("wait until {check}");
    if let Some(seconds) = inputs.get("timeout_secs").and_then(Value::as_f64) {
        words.push_str(&format!(", for up to {seconds} s"));
    }
    Some(words)
}

/// A check in words: "`up == 1` holds", "GET http://api/health answers 2xx".
fn check(value: &Value) -> Option<String> {
    let check: Check = serde_json::from_value(value.clone()).ok()?;
    match (&check.promql, &check.http) {
        (Some(query), _) => Some(format!("`{query}` holds")),
        (None, Some(http)) => {
            let statuses = if http.expect_status.is_empty() {
                "2xx".to_string()
            } else {
                http.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            };
            let mut words = format!("{} {} answers {statuses}", http.method, http.url);
            if let Some(text) = &http.body_contains {
                words.push_str(&format!(" with `{text}` in its body"));
            }
            Some(words)
        }
        (None, None) => None,
    }
}

fn approval(inputs: &Value) -> String {
    let approvers = inputs
        .get("approvers")
        .and_then(Value::as_array)
        .filter(|approvers| !approvers.is_empty())
        .map(|approvers| names(approvers))
        .unwrap_or_else(|| "any token with the `write` scope".to_string());
    let mut words = format!("ask {approvers} to approve");
    if inputs.get("distinct_from_starter") == Some(&Value::Bool(true)) {
        match inputs.get("started_by").and_then(Value::as_str) {
            Some(starter) => words.push_str(&format!(", not `{starter}`, who started the run")),
            None => words.push_str(", not whoever started the run"),
        }
    }
    if let Some(message) = inputs.get("message").and_then(Value::as_str) {
        words.push_str(&format!(": {message}"));
    }
    words
}

fn call(inputs: &Value) -> String {
    let runbook = inputs.get("runbook").and_then(Value::as_str).unwrap_or("?");
    let params: Vec<String> = inputs
        .get("params")
        .and_then(Value::as_object)
        .map(|params| {
            params
                .iter()
                .map(|(name, value)| match value {
                    Value::String(text) => format!("{name}={text}"),
                    other => format!("{name}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    if params.is_empty() {
        format!("call runbook `{runbook}`")
    } else {
        format!("call runbook `{runbook}` with {}", params.join(" "))
    }
}

/// `a`, `b`, `c` from a JSON list of names.
fn names(items: &[Value]) -> String {
    items
        .iter()
        .map(|item| match item {
            Value::String(name) => format!("`{name}`"),
            other => format!("`{other}`"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// An argument as a shell would need it written to mean the same: as is when it is plain,
/// single-quoted otherwise. For reading only; `exec` never goes through a shell.
fn shell_quoted(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        argument.to_string()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_read_as_what_they_would_do() {
        let cases = [
            (
                "exec",
                json!({"command": ["systemctl", "restart", "api"]}),
                "run `systemctl restart api`",
            ),
            (
                "exec",
                json!({"command": ["echo", "it's down"], "env": {"TOKEN": {"env": "T"}}}),
                r"run `echo 'it'\''s down'` with `TOKEN` set",
            ),
            (
                "exec",
                json!({"command": ["pg_ctl reload | tee log"], "shell": true}),
                "run `pg_ctl reload | tee log` in a shell",
            ),
            (
                "http_request",
                json!({"method": "POST", "url": "https://hooks.example/restart", "json": {"service": "api"}}),
                r#"POST https://hooks.example/restart with the JSON body {"service":"api"}"#,
            ),
            (
                "kubernetes.patch",
                json!({"kind": "Deployment", "namespace": "shop", "name": "web", "labels": {"tier": "web", "old": null}, "env": {"MODE": "safe"}}),
                "patch Deployment `shop/web`: remove label `old`, set label `tier=web`, set env `MODE=safe`, in every container",
            ),
            (
                "kubernetes.scale",
                json!({"name": "checkout", "replicas": 6, "max": 10}),
                "scale Deployment `checkout` in the default namespace to 6 replicas (kept within 1 to 10)",
            ),
            (
                "kubernetes.rollout_restart",
                json!({"namespace": "shop", "name": "api", "condition": "condition not known before the run (x); assumed true"}),
                "restart every pod of Deployment `shop/api` (patch its pod template's `kubectl.kubernetes.io/restartedAt`)",
            ),
            (
                "exec",
                json!({"unrendered": "undefined value"}),
                "exec, not rendered before the run: undefined value",
            ),
            (
                "wait",
                json!({"until": {"promql": "up{job=\"api\"} == 1"}, "timeout_secs": 300.0}),
                "wait until `up{job=\"api\"} == 1` holds, for up to 300 s",
            ),
            (
                "approval",
                json!({"approvers": ["alice", "bob"], "message": "restart?", "distinct_from_starter": true, "started_by": "alice"}),
                "ask `alice`, `bob` to approve, not `alice`, who started the run: restart?",
            ),
            (
                "runbook",
                json!({"runbook": "child", "params": {"pod": "api-1"}}),
                "call runbook `child` with pod=api-1",
            ),
        ];
        for (action, inputs, expected) in cases {
            assert_eq!(
                step_summary(action, &inputs).as_deref(),
                Some(expected),
                "{action} {inputs}"
            );
        }
        assert_eq!(step_summary("teleport", &json!({})), None);
    }
}
