//! `homeostat incidents [list|show|ack|resolve|note]` and `homeostat postmortem`, through the
//! daemon's API: it reads the incidents and journals what people do to them, with the token's name
//! as who did it.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::output::Format;
use super::remote::Remote;
use super::runbook::segment;
use super::show::{emit, render_table};
use super::{Global, EXIT_ERROR};

/// What `homeostat incidents` lists.
pub struct List {
    pub open: bool,
    pub limit: usize,
}

/// `homeostat incidents [list]`: a table, newest first.
pub async fn list(global: &Global, format: Format, list: List) -> u8 {
    let path = if list.open {
        "/api/v1/incidents?open=true"
    } else {
        "/api/v1/incidents"
    };
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let incidents = match remote.pages(path, "incidents", list.limit).await {
        Ok(list) => list,
        Err(failure) => return failure.report(),
    };
    if format.print_data(&incidents) {
        return 0;
    }
    if incidents.is_empty() {
        eprintln!("no {}incidents", if list.open { "open " } else { "" });
        return 0;
    }
    let wide = format == Format::Wide;
    let rows = incidents
        .iter()
        .map(|incident| {
            let mut row = vec![
                incident["id"].to_string(),
                text(&incident["state"]),
                flags(incident),
                time(&incident["started_at"]),
                text(&incident["title"]),
                text(&incident["group_key"]),
            ];
            if wide {
                row.push(format!(
                    "{}/{}",
                    incident["members_firing"], incident["members_total"]
                ));
                row.push(text(&incident["acknowledged_by"]));
                row.push(time(&incident["resolved_at"]));
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &[
            "ID",
            "STATE",
            "FLAGS",
            "STARTED (UTC)",
            "TITLE",
            "GROUP",
            "FIRING",
            "ACKED BY",
            "RESOLVED (UTC)",
        ]
    } else {
        &["ID", "STATE", "FLAGS", "STARTED (UTC)", "TITLE", "GROUP"]
    };
    format.print_table(headers, rows);
    0
}

/// `homeostat incidents show ID`: the incident, its alerts, its context and its timeline.
pub async fn show(global: &Global, format: Format, id: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let answer = match remote
        .get(&format!("/api/v1/incidents/{}", segment(id)))
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return failure.report(),
    };
    if format.print_data(&answer) {
        return 0;
    }
    emit(&describe(&answer));
    0
}

/// An incident as text, from `GET /api/v1/incidents/{id}`.
fn describe(answer: &Value) -> String {
    let incident = &answer["incident"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "incident  {}  {}",
        incident["id"],
        text(&incident["title"])
    );
    let _ = writeln!(out, "state     {}", text(&incident["state"]));
    if let Some(by) = incident["acknowledged_by"].as_str() {
        let _ = writeln!(
            out,
            "acked     by {by} at {}",
            time(&incident["acknowledged_at"])
        );
    }
    if let Some(at) = incident["mitigated_at"].as_str() {
        let _ = writeln!(out, "mitigated at {}", time(&Value::from(at)));
    }
    if let Some(by) = incident["resolved_by"].as_str() {
        let _ = writeln!(
            out,
            "resolved  by {by} at {}",
            time(&incident["resolved_at"])
        );
    }
    let flags = flags(incident);
    if flags != "-" {
        let _ = writeln!(out, "flags     {flags}");
    }
    let _ = writeln!(out, "group     {}", text(&incident["group_key"]));
    let _ = writeln!(
        out,
        "started   {}  (opened {})",
        time(&incident["started_at"]),
        time(&incident["opened_at"])
    );
    if let Some(reopened) = incident["reopened"].as_u64().filter(|count| *count > 0) {
        let _ = writeln!(out, "reopened  {reopened} time(s)");
    }

    let members = answer["members"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "\nmembers   {} ({} firing)",
        members.len(),
        incident["members_firing"]
    );
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|member| {
            let name = member["labels"]["alertname"]
                .as_str()
                .or_else(|| member["labels"]["reason"].as_str())
                .or_else(|| member["fingerprint"].as_str())
                .unwrap_or("?")
                .to_string();
            let labels = member["labels"]
                .as_object()
                .map(|labels| {
                    labels
                        .iter()
                        .filter(|(key, _)| key.as_str() != "alertname")
                        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                format!("  {}", text(&member["status"])),
                name,
                text(&member["source"]),
                time(&member["first_seen"]),
                labels,
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&render_table(
            &["  STATUS", "ALERT", "SOURCE", "FIRST SEEN", "LABELS"],
            rows,
            false,
        ));
    }

    let context = &answer["context"];
    let _ = writeln!(out, "\ncontext");
    let mut any = false;
    for runbook in context["runbooks"].as_array().into_iter().flatten() {
        any = true;
        let words = match (
            runbook["runbook"].as_str(),
            runbook["rule"].as_str(),
            runbook["url"].as_str(),
        ) {
            (_, _, Some(url)) => url.to_string(),
            (Some(name), Some(rule), None) if name == format!("rule:{rule}") => {
                format!("the steps of rule {rule}")
            }
            (Some(name), Some(rule), None) => format!("{name} (rule {rule})"),
            (Some(name), None, None) => name.to_string(),
            (None, _, None) => continue,
        };
        let _ = writeln!(out, "  runbook  {words}");
    }
    for change in context["recent_changes"].as_array().into_iter().flatten() {
        any = true;
        let _ = writeln!(
            out,
            "  change   {}  {}",
            time(&change["at"]),
            text(&change["summary"])
        );
    }
    for related in context["related"].as_array().into_iter().flatten() {
        any = true;
        let _ = writeln!(
            out,
            "  related  incident {} \"{}\", {}, opened {}",
            related["id"],
            text(&related["title"]),
            text(&related["state"]),
            time(&related["opened_at"])
        );
    }
    for query in context["queries"].as_array().into_iter().flatten() {
        any = true;
        let _ = writeln!(out, "  query    {}", query.as_str().unwrap_or(""));
    }
    if !any {
        let _ = writeln!(
            out,
            "  (no runbooks, recent changes, related incidents or queries)"
        );
    }

    let _ = writeln!(out, "\ntimeline (UTC)");
    for item in answer["timeline"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {}  {:<18}  {}",
            precise_time(&item["at"]),
            text(&item["kind"]),
            text(&item["summary"])
        );
    }
    out
}

/// What a person does to an incident.
pub enum Action {
    Acknowledge { comment: Option<String> },
    Resolve { comment: Option<String> },
    Note { text: String },
}

/// `homeostat incidents ack|resolve|note ID`.
pub async fn act(global: &Global, id: &str, action: Action) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let (path, body, done) = match action {
        Action::Acknowledge { comment } => ("ack", json!({ "comment": comment }), "acknowledged"),
        Action::Resolve { comment } => ("resolve", json!({ "comment": comment }), "resolved"),
        Action::Note { text } => ("notes", json!({ "text": text }), "noted"),
    };
    let path = format!("/api/v1/incidents/{}/{path}", segment(id));
    match remote.post(&path, &body).await {
        Ok(answer) => {
            let incident = &answer["incident"];
            emit(&format!(
                "incident {} {done}; it is {}\n",
                incident["id"],
                text(&incident["state"])
            ));
            0
        }
        Err(failure) => failure.report(),
    }
}

/// `homeostat postmortem ID [--output FILE]`: the Markdown draft, to stdout or a file.
pub async fn postmortem(global: &Global, id: &str, output: Option<&Path>) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let markdown = match remote
        .get_text(&format!("/api/v1/incidents/{}/postmortem", segment(id)))
        .await
    {
        Ok(markdown) => markdown,
        Err(failure) => return failure.report(),
    };
    let Some(output) = output else {
        emit(&markdown);
        return 0;
    };
    match std::fs::write(output, &markdown) {
        Ok(()) => {
            eprintln!(
                "wrote the postmortem draft of incident {id} to `{}`",
                output.display()
            );
            0
        }
        Err(error) => {
            eprintln!("error: cannot write `{}`: {error}", output.display());
            EXIT_ERROR
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

/// `flapping`, `escalated`, or `-`.
fn flags(incident: &Value) -> String {
    let flags: Vec<&str> = ["flapping", "escalated"]
        .into_iter()
        .filter(|flag| incident[*flag].as_bool() == Some(true))
        .collect();
    if flags.is_empty() {
        "-".to_string()
    } else {
        flags.join(",")
    }
}

fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|text| text.parse().ok())
}

fn time(value: &Value) -> String {
    parse_time(value)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_string())
}

fn precise_time(value: &Value) -> String {
    parse_time(value)
        .map(|at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_reads_as_text() {
        let answer = json!({
            "incident": {"id": 3, "title": "HighErrorRate (+1 more)", "state": "acknowledged",
                "acknowledged_by": "w", "acknowledged_at": "2026-01-01T10:01:00Z",
                "group_key": "{service=\"checkout\"}", "flapping": false, "escalated": true,
                "started_at": "2026-01-01T10:00:00Z", "opened_at": "2026-01-01T10:00:01Z",
                "members_firing": 2, "reopened": 0},
            "members": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "service": "checkout"},
                "source": "alertmanager", "first_seen": "2026-01-01T10:00:01Z"}],
            "context": {"runbooks": [{"runbook": "restart", "rule": "x"}],
                "recent_changes": [{"at": "2026-01-01T09:55:00Z", "summary": "deploy v2", "event_id": "e"}],
                "related": [], "queries": ["up == 0"]},
            "timeline": [{"seq": 1, "at": "2026-01-01T10:00:01.5Z", "kind": "opened", "summary": "opened by `HighErrorRate`"}]
        });
        let text = describe(&answer);
        for expected in [
            "incident  3  HighErrorRate (+1 more)",
            "state     acknowledged\nacked     by w at 2026-01-01 10:01:00",
            "flags     escalated",
            "group     {service=\"checkout\"}",
            "  firing  HighErrorRate  alertmanager  2026-01-01 10:00:01  service=checkout",
            "  runbook  restart (rule x)",
            "  change   2026-01-01 09:55:00  deploy v2",
            "  query    up == 0",
            "  2026-01-01 10:00:01.500  opened              opened by `HighErrorRate`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
