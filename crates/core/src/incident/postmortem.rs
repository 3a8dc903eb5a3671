//! A blameless postmortem draft in Markdown, written from an incident's record and timeline.
//!
//! It states what the journal knows (when, what fired, what homeostat and people did, what changed
//! before) and leaves what only people know as questions. Nothing in it names a person as a cause.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::correlate::duration_words;
use super::{Incident, Member, State};
use crate::event::Status;

/// One line of the timeline, already put in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub at: DateTime<Utc>,
    /// The journal kind: `opened`, `member_added`, `run_started`, `run_finished`, `escalated`, ...
    pub kind: String,
    pub summary: String,
}

/// A remediation run and how it ended, for "actions taken".
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub run_id: String,
    pub runbook: String,
    pub rule: String,
    /// Who started it by hand (an API token's name); `None` for a rule's run.
    pub started_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `succeeded`, `failed`, `rolled_back`, `needs_attention`, ..., or `running`.
    pub status: String,
    pub error: Option<String>,
}

/// What surrounded the incident.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The runbook that applies: a rule's, or an alert's `runbook_url`.
    pub runbooks: Vec<String>,
    /// Recent changes to the same group before the incident began: when, and what.
    pub changes: Vec<(DateTime<Utc>, String)>,
    /// Earlier incidents of the same group: number, title, when.
    pub related: Vec<(i64, String, DateTime<Utc>)>,
    /// The PromQL expressions behind its alerts.
    pub queries: Vec<String>,
}

/// The draft. `now` dates it; an unresolved incident's impact window is open-ended.
pub fn render(
    incident: &Incident,
    members: &[Member],
    timeline: &[Item],
    actions: &[Action],
    context: &Context,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let end = incident.resolved_at;
    let lasted = end.map(|end| duration_words((end - incident.started_at).num_milliseconds()));
    let _ = writeln!(
        out,
        "# Postmortem: incident {} — {}",
        incident.id, incident.title
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "_Draft written by homeostat on {} from the incident's journal. Blameless: it describes what \
         happened and what the systems and people did, so that the next response is better; it \
         does not look for someone at fault. Edit freely._",
        stamp(now)
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "## Summary");
    let _ = writeln!(out);
    let firing_names = names(members.iter());
    let status = match (incident.state, lasted.as_deref()) {
        (State::Resolved, Some(lasted)) => format!("It lasted {lasted} and is resolved"),
        (state, _) => format!("It is {state}, not resolved yet"),
    };
    let _ = writeln!(
        out,
        "{} alert{} for {} ({}) formed incident {}. {status}{}.",
        members.len(),
        if members.len() == 1 { "" } else { "s" },
        group_words(incident),
        firing_names,
        incident.id,
        match &incident.resolved_by {
            Some(by) if by == "homeostat" => ": every alert cleared".to_string(),
            Some(by) => format!(", resolved by {by}"),
            None => String::new(),
        }
    );
    // A run a person started is theirs, not the automation's, even when homeostat executed it.
    let (by_hand, automated): (Vec<&Action>, Vec<&Action>) =
        actions.iter().partition(|action| action.rule.is_empty());
    let succeeded = automated
        .iter()
        .filter(|action| action.status == "succeeded")
        .count();
    if automated.is_empty() {
        let _ = writeln!(out, "No automated remediation ran.");
    } else {
        let _ = writeln!(
            out,
            "homeostat ran {} remediation{} ({} succeeded){}.",
            automated.len(),
            if automated.len() == 1 { "" } else { "s" },
            succeeded,
            if incident.escalated {
                "; it escalated to people"
            } else {
                ""
            }
        );
    }
    for action in &by_hand {
        let _ = writeln!(
            out,
            "{} ran runbook `{}` by hand ({}).",
            action.started_by.as_deref().unwrap_or("Someone"),
            action.runbook,
            action.status
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Impact");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- Window: {} to {}{}.",
        stamp(incident.started_at),
        end.map_or_else(|| "now (still open)".to_string(), stamp),
        lasted
            .map(|lasted| format!(" ({lasted})"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "- Affected: {}.", group_words(incident));
    for member in members {
        let _ = writeln!(
            out,
            "  - {}{} from `{}`, {}",
            member_name(member),
            member
                .labels
                .get("instance")
                .or_else(|| member.labels.get("pod"))
                .map(|on| format!(" on {on}"))
                .unwrap_or_default(),
            member.source,
            match member.status {
                Status::Firing => "still firing".to_string(),
                Status::Resolved => format!("resolved by {}", stamp(member.last_seen)),
            }
        );
    }
    let _ = writeln!(
        out,
        "- User-facing impact: _to be filled in by the team (who noticed, what failed for them)._"
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "## Detection");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The problem began at {}; homeostat opened the incident at {}: {} to detect.",
        stamp(incident.started_at),
        stamp(incident.opened_at),
        seconds_words(incident.time_to_detect())
    );
    if let Some(seconds) = incident.time_to_acknowledge() {
        let _ = writeln!(
            out,
            "{} acknowledged it {} after it began.",
            incident.acknowledged_by.as_deref().unwrap_or("Someone"),
            seconds_words(seconds)
        );
    } else {
        let _ = writeln!(out, "Nobody acknowledged it.");
    }
    if !context.queries.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "The alerts' expressions:");
        let _ = writeln!(out);
        for query in &context.queries {
            let _ = writeln!(out, "```promql\n{query}\n```");
        }
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Actions taken and their effect");
    let _ = writeln!(out);
    if actions.is_empty() {
        let _ = writeln!(out, "No automated remediation ran. _What did people do?_");
    } else if automated.is_empty() {
        let _ = writeln!(out, "No automated remediation ran; people did:");
        let _ = writeln!(out);
    }
    for action in actions {
        let effect = match (action.status.as_str(), action.finished_at) {
            ("succeeded", Some(finished)) => match incident.resolved_at {
                Some(resolved) if resolved >= finished => format!(
                    "succeeded at {}; the incident resolved {} later",
                    stamp(finished),
                    duration_words((resolved - finished).num_milliseconds())
                ),
                _ if incident.escalated => format!(
                    "succeeded at {}, but the alerts did not clear: escalated",
                    stamp(finished)
                ),
                _ => format!("succeeded at {}", stamp(finished)),
            },
            ("running", _) | (_, None) => "still running".to_string(),
            (status, Some(finished)) => format!(
                "ended `{status}` at {}{}",
                stamp(finished),
                action
                    .error
                    .as_ref()
                    .map(|error| format!(": {error}"))
                    .unwrap_or_default()
            ),
        };
        let rule = if action.rule.is_empty() {
            match &action.started_by {
                Some(by) => format!("started by hand by {by}"),
                None => "started by hand".to_string(),
            }
        } else {
            format!("rule `{}`", action.rule)
        };
        let _ = writeln!(
            out,
            "- {}: runbook `{}` ({rule}), run `{}`: {effect}.",
            stamp(action.started_at),
            action.runbook,
            action.run_id
        );
    }
    if let Some(mitigated) = incident.time_to_mitigate() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Time to mitigate: {}.", seconds_words(mitigated));
    }
    if let Some(resolved) = incident.time_to_resolve() {
        let _ = writeln!(out, "Time to resolve: {}.", seconds_words(resolved));
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Timeline");
    let _ = writeln!(out);
    let _ = writeln!(out, "| time (UTC) | what happened |");
    let _ = writeln!(out, "|---|---|");
    for item in timeline {
        let _ = writeln!(
            out,
            "| {} | {} |",
            stamp(item.at),
            item.summary.replace('|', "\\|")
        );
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## What worked");
    let _ = writeln!(out);
    let mut worked = Vec::new();
    if incident.time_to_detect() <= 300.0 {
        worked.push(format!(
            "Detection took {}.",
            seconds_words(incident.time_to_detect())
        ));
    }
    if members.len() > 1 {
        worked.push(format!(
            "{} alerts were correlated into one incident instead of {} pages.",
            members.len(),
            members.len()
        ));
    }
    if succeeded > 0 && !incident.escalated && incident.is_resolved() {
        worked.push(
            "Automated remediation fixed it and the fix was verified by the alerts clearing."
                .into(),
        );
    }
    if incident.escalated {
        worked.push(
            "When the remediation did not help, people were told with what had been tried.".into(),
        );
    }
    if worked.is_empty() {
        worked.push("_To be filled in by the team._".into());
    }
    for line in worked {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Context");
    let _ = writeln!(out);
    if context.runbooks.is_empty() {
        let _ = writeln!(out, "- Runbook: none linked. _Should one exist?_");
    }
    for runbook in &context.runbooks {
        let _ = writeln!(out, "- Runbook: {runbook}");
    }
    if context.changes.is_empty() {
        let _ = writeln!(
            out,
            "- No changes to the same group were recorded before it began."
        );
    }
    for (at, change) in &context.changes {
        let before = (incident.started_at - *at).num_milliseconds();
        let when = if before >= 0 {
            format!("{} before it began", duration_words(before))
        } else {
            format!("{} after it began", duration_words(-before))
        };
        let _ = writeln!(out, "- Change at {} ({when}): {change}", stamp(*at));
    }
    for (id, title, at) in &context.related {
        let _ = writeln!(out, "- Related: incident {id}, \"{title}\", {}", stamp(*at));
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Open questions");
    let _ = writeln!(out);
    let mut questions = Vec::new();
    if let Some((at, change)) = context.changes.last() {
        questions.push(format!(
            "Did the change at {} ({change}) cause it?",
            stamp(*at)
        ));
    }
    if incident.escalated {
        questions.push("Why did the remediation not clear the alerts, and what did?".into());
    }
    if actions
        .iter()
        .any(|action| action.status == "needs_attention")
    {
        questions
            .push("A run stopped in `needs_attention`: was its interrupted step applied?".into());
    }
    if timeline.iter().any(|item| item.kind == "flapping") {
        questions.push("An alert flapped: is its threshold or `for` duration right?".into());
    }
    if incident.reopened > 0 {
        questions.push(format!(
            "It came back {} time{} after resolving: was the first fix complete?",
            incident.reopened,
            if incident.reopened == 1 { "" } else { "s" }
        ));
    }
    if incident.time_to_detect() > 300.0 {
        questions.push(format!(
            "Detection took {}: can an alert see this sooner?",
            seconds_words(incident.time_to_detect())
        ));
    }
    questions.push("What was the root cause, and what will stop it recurring?".into());
    for question in questions {
        let _ = writeln!(out, "- {question}");
    }
    out
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn seconds_words(seconds: f64) -> String {
    duration_words((seconds * 1000.0) as i64)
}

fn member_name(member: &Member) -> String {
    let name = member
        .labels
        .get("alertname")
        .or_else(|| member.labels.get("reason"))
        .cloned()
        .unwrap_or_else(|| member.fingerprint.clone());
    format!("`{name}`")
}

fn names<'a>(members: impl Iterator<Item = &'a Member>) -> String {
    let mut names: Vec<String> = members.map(member_name).collect();
    names.dedup();
    names.join(", ")
}

fn group_words(incident: &Incident) -> String {
    if incident.labels.is_empty() {
        return "one alert".into();
    }
    incident
        .labels
        .iter()
        .map(|(name, value)| format!("{name} `{value}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Labels;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn a_draft_has_every_section_with_what_the_journal_knows() {
        let incident = Incident {
            id: 7,
            state: State::Resolved,
            title: "HighErrorRate (+1 more)".into(),
            group_key: r#"{service="checkout"}"#.into(),
            labels: [("service".to_string(), "checkout".to_string())].into(),
            flapping: false,
            escalated: false,
            members_firing: 0,
            members_total: 2,
            reopened: 0,
            started_at: at(0),
            opened_at: at(30),
            acknowledged_at: None,
            acknowledged_by: None,
            mitigated_at: Some(at(100)),
            resolved_at: Some(at(400)),
            resolved_by: Some("homeostat".into()),
            escalated_at: None,
            updated_at: at(400),
        };
        let member = |name: &str| Member {
            incident: 7,
            fingerprint: name.into(),
            source: "alertmanager".into(),
            status: Status::Resolved,
            labels: Labels::from([("alertname".to_string(), name.to_string())]),
            annotations: Labels::new(),
            first_event_id: "e1".into(),
            last_event_id: "e2".into(),
            first_seen: at(30),
            last_seen: at(400),
            starts_at: Some(at(0)),
            generator_url: None,
        };
        let draft = render(
            &incident,
            &[member("HighErrorRate"), member("HighLatency")],
            &[Item {
                at: at(30),
                kind: "opened".into(),
                summary: "opened by `HighErrorRate`".into(),
            }],
            &[Action {
                run_id: "r1".into(),
                runbook: "restart-service".into(),
                rule: "restart-checkout".into(),
                started_by: None,
                started_at: at(40),
                finished_at: Some(at(100)),
                status: "succeeded".into(),
                error: None,
            }],
            &Context {
                runbooks: vec!["restart-service".into()],
                changes: vec![(at(-360), "checkout rolled out to image v1.4.2".into())],
                related: vec![],
                queries: vec!["sum(rate(http_errors_total[5m])) > 1".into()],
            },
            at(500),
        );
        for expected in [
            "# Postmortem: incident 7 — HighErrorRate (+1 more)",
            "## Summary",
            "2 alerts for service `checkout` (`HighErrorRate`, `HighLatency`) formed incident 7. It lasted 6m and is resolved: every alert cleared.",
            "## Impact",
            "- Window: 2027-01-15 08:00:00 to 2027-01-15 08:06:40 (6m).",
            "## Detection",
            "30s to detect",
            "```promql\nsum(rate(http_errors_total[5m])) > 1\n```",
            "runbook `restart-service` (rule `restart-checkout`), run `r1`: succeeded at 2027-01-15 08:01:40; the incident resolved 5m later.",
            "| 2027-01-15 08:00:30 | opened by `HighErrorRate` |",
            "## What worked",
            "2 alerts were correlated into one incident instead of 2 pages.",
            "- Change at 2027-01-15 07:54:00 (6m before it began): checkout rolled out to image v1.4.2",
            "## Open questions",
            "Did the change at 2027-01-15 07:54:00 (checkout rolled out to image v1.4.2) cause it?",
        ] {
            assert!(draft.contains(expected), "missing {expected:?} in:\n{draft}");
        }
    }

    #[test]
    fn a_run_started_by_hand_is_credited_to_the_person() {
        let incident = Incident {
            id: 8,
            state: State::Resolved,
            title: "DiskFull".into(),
            group_key: r#"{service="db"}"#.into(),
            labels: [("service".to_string(), "db".to_string())].into(),
            flapping: false,
            escalated: false,
            members_firing: 0,
            members_total: 1,
            reopened: 0,
            started_at: at(0),
            opened_at: at(10),
            acknowledged_at: None,
            acknowledged_by: None,
            mitigated_at: None,
            resolved_at: Some(at(300)),
            resolved_by: Some("homeostat".into()),
            escalated_at: None,
            updated_at: at(300),
        };
        let draft = render(
            &incident,
            &[],
            &[],
            &[Action {
                run_id: "r2".into(),
                runbook: "clean-disk".into(),
                rule: String::new(),
                started_by: Some("alice".into()),
                started_at: at(60),
                finished_at: Some(at(90)),
                status: "succeeded".into(),
                error: None,
            }],
            &Context::default(),
            at(400),
        );
        for expected in [
            "No automated remediation ran.\nalice ran runbook `clean-disk` by hand (succeeded).",
            "No automated remediation ran; people did:",
            "runbook `clean-disk` (started by hand by alice), run `r2`: succeeded",
        ] {
            assert!(
                draft.contains(expected),
                "missing {expected:?} in:\n{draft}"
            );
        }
        assert!(!draft.contains("homeostat ran"), "{draft}");
    }
}
