//! `homeostat runbook list|show|run`, `homeostat approve`, `homeostat approvals` and
//! `homeostat runs cancel`, through the daemon's API, which journals what people do and records the
//! token's name as who did it.

use homeostat_core::config::{Check, OnFailure, Runbook, Step};
use serde_json::{json, Value};

use super::output::{self, Format};
use super::remote::Remote;
use super::show::emit;
use super::{follow, Global, EXIT_ERROR};

/// Parses `--param KEY=VALUE`. The value stays text; the daemon converts it to the declared type.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// `homeostat runbook list`: the daemon's runbooks with their parameters.
pub async fn list(global: &Global, format: Format) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let runbooks = match remote.get("/api/v1/runbooks").await {
        Ok(answer) => answer["runbooks"].as_array().cloned().unwrap_or_default(),
        Err(failure) => return failure.report(),
    };
    if format.print_data(&runbooks) {
        return 0;
    }
    if runbooks.is_empty() {
        eprintln!("the daemon has no runbooks; declare them under `runbooks:` in its config");
        return 0;
    }
    let wide = format == Format::Wide;
    let rows = runbooks
        .iter()
        .map(|runbook| {
            let params = runbook["params"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, param)| {
                    let mut text = format!("{name}: {}", param["type"].as_str().unwrap_or("?"));
                    if !param["default"].is_null() {
                        text.push_str(&format!(" = {}", param["default"]));
                    } else if param["required"] == true {
                        text.push_str(" (required)");
                    }
                    text
                })
                .collect::<Vec<_>>()
                .join(", ");
            let steps = runbook["steps"].as_array().cloned().unwrap_or_default();
            let mut row = vec![
                output::cell(&runbook["name"]),
                steps.len().to_string(),
                runbook["description"].as_str().unwrap_or("").to_string(),
                params,
            ];
            if wide {
                row.push(
                    steps
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &["NAME", "STEPS", "DESCRIPTION", "PARAMS", "STEP NAMES"]
    } else {
        &["NAME", "STEPS", "DESCRIPTION", "PARAMS"]
    };
    format.print_table(headers, rows);
    0
}

/// `homeostat runbook show NAME`.
pub async fn show(global: &Global, format: Format, name: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let shown = match remote
        .get(&format!("/api/v1/runbooks/{}", segment(name)))
        .await
    {
        Ok(shown) => shown,
        Err(failure) => return failure.report(),
    };
    if format.print_data(&shown["runbook"]) {
        return 0;
    }
    let runbook: Runbook = match serde_json::from_value(shown["runbook"].clone()) {
        Ok(runbook) => runbook,
        Err(error) => {
            eprintln!(
                "error: the daemon's runbook `{name}` does not read as a runbook ({error}); is the CLI older than the daemon?"
            );
            return EXIT_ERROR;
        }
    };
    let mut text = describe(&runbook).join("\n");
    text.push('\n');
    emit(&text);
    0
}

/// A runbook as text: its parameters, and its steps as an indented tree.
fn describe(runbook: &Runbook) -> Vec<String> {
    let mut lines = vec![format!("runbook  {}", runbook.name)];
    if let Some(description) = &runbook.description {
        for line in description.lines() {
            lines.push(format!("         {line}"));
        }
    }
    lines.push(String::new());
    if runbook.params.is_empty() {
        lines.push("params   (none)".into());
    } else {
        lines.push("params".into());
        let width = runbook.params.keys().map(|k| k.len()).max().unwrap_or(0);
        for (name, param) in &runbook.params {
            let mut text = format!("  {name:<width$}  {:<7}", param.kind.as_str());
            match &param.default {
                Some(default) => text.push_str(&format!("  default {default}")),
                None if param.required => text.push_str("  required"),
                None => text.push_str("  optional"),
            }
            if !param.allowed.is_empty() {
                let allowed: Vec<String> = param.allowed.iter().map(Value::to_string).collect();
                text.push_str(&format!("  allowed {}", allowed.join(", ")));
            }
            if let Some(description) = &param.description {
                text.push_str(&format!("  # {description}"));
            }
            lines.push(text.trim_end().to_string());
        }
    }
    lines.push(String::new());
    lines.push("steps".into());
    step_lines(&runbook.steps, 1, &mut lines);
    if !runbook.outputs.is_empty() {
        lines.push(String::new());
        lines.push("outputs".into());
        for (name, template) in &runbook.outputs {
            lines.push(format!("  {name}: {template}"));
        }
    }
    lines
}

fn step_lines(steps: &[Step], depth: usize, lines: &mut Vec<String>) {
    let indent = "  ".repeat(depth);
    for (index, step) in steps.iter().enumerate() {
        let mut text = format!("{indent}{}. {}  {}", index + 1, step.name, kind(step));
        let mut details = Vec::new();
        if let Some(when) = &step.when {
            details.push(format!("when: {when}"));
        }
        if let Some(retries) = &step.retries {
            details.push(format!(
                "retries: {} (backoff {}s x{}, max {}s)",
                retries.count,
                retries.backoff_secs,
                retries.backoff_factor,
                retries.max_backoff_secs
            ));
        }
        if let Some(timeout) = step.timeout_secs {
            details.push(format!("timeout: {timeout}s"));
        }
        match step.on_failure {
            OnFailure::Rollback => {}
            OnFailure::Abort => details.push("on_failure: abort".into()),
            OnFailure::Continue => details.push("on_failure: continue".into()),
        }
        if step.idempotent {
            details.push("idempotent".into());
        }
        if !details.is_empty() {
            text.push_str(&format!("  [{}]", details.join("; ")));
        }
        lines.push(text);
        // Nested steps line up under the parent's name.
        let inner = depth + 2;
        if let Some(branches) = &step.parallel {
            for branch in branches {
                lines.push(format!("{}branch {}", "  ".repeat(inner), branch.name));
                step_lines(&branch.steps, inner + 1, lines);
            }
        }
        if let Some(steps) = &step.steps {
            step_lines(steps, inner, lines);
        }
        if let Some(rollback) = &step.rollback {
            lines.push(format!(
                "{}rollback: {}  {}",
                "  ".repeat(inner),
                rollback.name,
                kind(rollback)
            ));
        }
    }
}

/// What a step does, in a few words.
fn kind(step: &Step) -> String {
    if let Some(action) = &step.action {
        return action.clone();
    }
    if step.parallel.is_some() {
        return "parallel".into();
    }
    if let Some(items) = &step.for_each {
        return match step.concurrency {
            Some(concurrency) => format!("for_each {items} (concurrency {concurrency})"),
            None => format!("for_each {items}"),
        };
    }
    if let Some(runbook) = &step.runbook {
        let params: Vec<String> = step
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return if params.is_empty() {
            format!("runbook {runbook}")
        } else {
            format!("runbook {runbook} ({})", params.join(", "))
        };
    }
    if let Some(wait) = &step.wait {
        return match (&wait.duration_secs, &wait.until) {
            (Some(secs), _) => format!("wait {secs}s"),
            (None, Some(check)) => {
                format!(
                    "wait until {} (every {}s)",
                    check_text(check),
                    wait.interval_secs
                )
            }
            (None, None) => "wait".into(),
        };
    }
    if let Some(approval) = &step.approval {
        return if approval.approvers.is_empty() {
            "approval by any write token".into()
        } else {
            format!("approval by {}", approval.approvers.join(", "))
        };
    }
    if let Some(check) = &step.assert {
        return format!("assert {}", check_text(check));
    }
    "?".into()
}

fn check_text(check: &Check) -> String {
    match (&check.promql, &check.http) {
        (Some(promql), _) => format!("promql `{promql}`"),
        (None, Some(http)) => format!("http {} {}", http.method, http.url),
        (None, None) => "?".into(),
    }
}

/// What `homeostat runbook run` was asked.
pub struct Start {
    pub name: String,
    pub params: Vec<(String, String)>,
    pub target: Option<String>,
    pub incident: Option<i64>,
    pub dry_run: bool,
    pub follow: bool,
}

/// `homeostat runbook run NAME`: prints the run's id; with `--dry-run`, each step's rendered
/// inputs; with `--follow`, each step as it happens, exiting 0 only if the run succeeds.
pub async fn run(global: &Global, start: Start) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let params: serde_json::Map<String, Value> = start
        .params
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    let mut body = json!({ "params": params, "target": start.target, "dry_run": start.dry_run });
    // Only when given, so a daemon older than `--incident` still takes the rest.
    if let Some(incident) = start.incident {
        body["incident"] = json!(incident);
    }
    let path = format!("/api/v1/runbooks/{}/runs", segment(&start.name));
    let answer = match remote.post(&path, &body).await {
        Ok(answer) => answer,
        Err(failure) => return failure.report(),
    };
    let Some(run_id) = answer["run_id"].as_str() else {
        eprintln!(
            "error: `{}` answered without a run id: {answer}",
            remote.base()
        );
        return EXIT_ERROR;
    };
    println!("{run_id}");
    if answer["dry_run"].as_bool() == Some(true) {
        return print_dry_run(&remote, run_id).await;
    }
    if start.follow {
        return follow::follow(&remote, run_id).await;
    }
    eprintln!("started; see it with `homeostat runs show {run_id}`, or follow it with `--follow`");
    0
}

/// Prints each step of a dry run with its rendered inputs, once it has ended: a dry run with
/// Kubernetes steps waits for the API server's answers to its `dryRun=All` requests.
async fn print_dry_run(remote: &Remote, run_id: &str) -> u8 {
    let path = format!("/api/v1/runs/{}", segment(run_id));
    let shown = loop {
        let shown = match remote.get(&path).await {
            Ok(shown) => shown,
            Err(failure) => return failure.report(),
        };
        if shown["run"]["status"] != "running" {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let steps = shown["steps"].as_array().cloned().unwrap_or_default();
    eprintln!(
        "dry run: every step rendered; Kubernetes steps asked the API server (dryRun=All); nothing changed"
    );
    for step in &steps {
        let text = |key: &str| step[key].as_str().unwrap_or("").to_string();
        println!("{}  {}  {}", text("step"), text("action"), text("status"));
        if let Some(error) = step["error"].as_str() {
            println!("    error: {error}");
        }
        if let Some(inputs) = step["inputs"].as_object() {
            // One input a line, each value as compact JSON: long values stay readable and greppable.
            for (key, value) in inputs {
                println!("    {key}: {value}");
            }
        }
        // What the API server said the step would do.
        if let Some(output) = step["output"]
            .as_object()
            .filter(|output| !output.is_empty())
        {
            println!("    would: {}", serde_json::Value::Object(output.clone()));
        }
    }
    0
}

/// `homeostat approve RUN`: approves or rejects the approval the run waits for.
pub async fn approve(
    global: &Global,
    run_id: &str,
    approve: bool,
    step: Option<String>,
    comment: Option<String>,
) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let body = json!({ "approve": approve, "step": step, "comment": comment });
    let path = format!("/api/v1/runs/{}/approval", segment(run_id));
    match remote.post(&path, &body).await {
        Ok(answer) => {
            println!(
                "{} step `{}` of run `{run_id}` as `{}`",
                if approve { "approved" } else { "rejected" },
                answer["step"].as_str().unwrap_or("?"),
                answer["by"].as_str().unwrap_or("?"),
            );
            0
        }
        Err(failure) => failure.report(),
    }
}

/// `homeostat runs cancel ID`.
pub async fn cancel(global: &Global, run_id: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let path = format!("/api/v1/runs/{}/cancel", segment(run_id));
    match remote.post(&path, &json!({})).await {
        Ok(_) => {
            println!(
                "cancelling run `{run_id}`; it ends `cancelled` once actions in flight finish"
            );
            0
        }
        Err(failure) => failure.report(),
    }
}

/// `homeostat approvals`: what waits for an approval this token may give.
pub async fn approvals(global: &Global, format: Format, all: bool) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let path = if all {
        "/api/v1/approvals?all=true"
    } else {
        "/api/v1/approvals"
    };
    let approvals = match remote.get(path).await {
        Ok(answer) => answer["approvals"].as_array().cloned().unwrap_or_default(),
        Err(failure) => return failure.report(),
    };
    if format.print_data(&approvals) {
        return 0;
    }
    if approvals.is_empty() {
        eprintln!(
            "no run waits for an approval {}",
            if all { "" } else { "that this token may give" }
        );
        return 0;
    }
    let wide = format == Format::Wide;
    let rows = approvals
        .iter()
        .map(|approval| {
            let mut row = vec![
                output::cell(&approval["run_id"]),
                output::cell(&approval["runbook"]),
                output::cell(&approval["target"]),
                output::cell(&approval["step"]),
                output::time(&approval["deadline"]),
                output::cell(&approval["message"]),
                then(&approval["then"]),
            ];
            if wide {
                let by = match approval["started_by"].as_str() {
                    Some(by) => format!("by {by}"),
                    None => output::cell(&approval["rule"]),
                };
                row.push(by);
                row.push(output::cell(&approval["incident"]));
                row.push(output::labels(&approval["params"]));
                row.push(
                    approval["approvers"]
                        .as_array()
                        .filter(|approvers| !approvers.is_empty())
                        .map(|approvers| {
                            approvers
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_else(|| "any write token".into()),
                );
                row.push(
                    if approval["may_approve"] == true {
                        "yes"
                    } else {
                        "no"
                    }
                    .into(),
                );
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &[
            "RUN",
            "RUNBOOK",
            "TARGET",
            "STEP",
            "DEADLINE (UTC)",
            "MESSAGE",
            "THEN RUNS",
            "TRIGGER",
            "INCIDENT",
            "PARAMS",
            "APPROVERS",
            "MINE",
        ]
    } else {
        &[
            "RUN",
            "RUNBOOK",
            "TARGET",
            "STEP",
            "DEADLINE (UTC)",
            "MESSAGE",
            "THEN RUNS",
        ]
    };
    format.print_table(headers, rows);
    eprintln!("answer with `homeostat approve RUN` or `homeostat approve RUN --reject`");
    0
}

/// The steps an approval lets run, comma-separated; `-` when it is the last.
fn then(value: &Value) -> String {
    let steps: Vec<&str> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if steps.is_empty() {
        "-".into()
    } else {
        steps.join(", ")
    }
}

/// Percent-encodes one URL path segment.
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_param("query=a=b"),
            Ok(("query".to_string(), "a=b".to_string()))
        );
        assert_eq!(
            parse_param("empty="),
            Ok(("empty".to_string(), String::new()))
        );
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=value").is_err());
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("restart-api_2.x"), "restart-api_2.x");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn steps_render_as_an_indented_tree() {
        let yaml = r#"
name: rb
params:
  replicas: {type: integer, required: true, description: pods}
  mode: {default: soft, allowed: [soft, hard]}
steps:
  - name: drain
    action: log
    with: {message: x}
    when: params.replicas > 1
    retries: {count: 2}
    rollback: {name: undrain, action: log, with: {message: y}}
  - name: fan
    parallel:
      - name: a
        steps: [{name: one, action: log, with: {message: "1"}}]
  - name: ok
    approval: {approvers: [w]}
"#;
        let runbook: Runbook = serde_yaml_ng::from_str(yaml).expect("a runbook");
        let text = describe(&runbook).join("\n");
        for expected in [
            "  mode      string   default \"soft\"  allowed \"soft\", \"hard\"",
            "  replicas  integer  required  # pods",
            "  1. drain  log  [when: params.replicas > 1; retries: 2 (backoff 1s x2, max 60s)]",
            "      rollback: undrain  log",
            "  2. fan  parallel",
            "      branch a",
            "        1. one  log",
            "  3. ok  approval by w",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
