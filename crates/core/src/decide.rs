//! `decide`: given an event, the compiled rules and the guard state, which runbooks run, as data.
//!
//! Pure apart from updating the guard state it is handed; the engine journals the decisions and then
//! executes the planned runs. Replay and dry runs call this same function and execute nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Runbook;
use crate::event::{new_id, Event};
use crate::guard::{GuardState, Skip};
use crate::rule::{Compiled, CompiledRule, Match};
use crate::runbook::coerce_params;

/// What was decided for one rule whose matchers matched the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub rule: String,
    pub target: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// A run was planned and will execute.
    Run { run: PlannedRun },
    /// A run was planned as a dry run: its inputs are rendered and recorded, nothing executes.
    DryRun { run: PlannedRun },
    /// A guard held it back; for a dry run, a guard of the dry runs' own books would have.
    Skipped {
        skip: Skip,
        message: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    /// The labels matched but the rule does not act on this status (by default, on `resolved`).
    IgnoredStatus { status: crate::event::Status },
    /// The rule could not be applied: its condition or a template failed on this event.
    Error { message: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Run { .. } => "run",
            Verdict::DryRun { .. } => "dry_run",
            Verdict::Skipped {
                skip,
                dry_run: false,
                ..
            } => match skip {
                Skip::Locked { .. } => "skipped_locked",
                Skip::Concurrency { .. } => "skipped_concurrency",
                Skip::Cooldown { .. } => "skipped_cooldown",
                Skip::RateLimited { .. } => "skipped_rate_limit",
                Skip::BlastRadius { .. } => "refused_blast_radius",
                Skip::Disabled { .. } => "skipped_disabled",
                Skip::Loop { .. } => "stopped_loop",
            },
            Verdict::Skipped {
                skip,
                dry_run: true,
                ..
            } => match skip {
                Skip::Locked { .. } => "dry_run_skipped_locked",
                Skip::Concurrency { .. } => "dry_run_skipped_concurrency",
                Skip::Cooldown { .. } => "dry_run_skipped_cooldown",
                Skip::RateLimited { .. } => "dry_run_skipped_rate_limit",
                Skip::BlastRadius { .. } => "dry_run_refused_blast_radius",
                Skip::Disabled { .. } => "dry_run_skipped_disabled",
                Skip::Loop { .. } => "dry_run_stopped_loop",
            },
            Verdict::IgnoredStatus { .. } => "ignored_status",
            Verdict::Error { .. } => "error",
        }
    }

    pub fn run(&self) -> Option<&PlannedRun> {
        match self {
            Verdict::Run { run } | Verdict::DryRun { run } => Some(run),
            _ => None,
        }
    }
}

/// How a decision is journaled: a planned run is named by its id, because its plan is journaled
/// once, as the run's `run_started` entry.
#[derive(Serialize)]
pub struct DecisionRecord<'a> {
    rule: &'a str,
    target: &'a str,
    #[serde(flatten)]
    verdict: VerdictRecord<'a>,
}

#[derive(Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum VerdictRecord<'a> {
    Run {
        run_id: &'a str,
    },
    DryRun {
        run_id: &'a str,
    },
    Skipped {
        skip: &'a Skip,
        message: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
    IgnoredStatus {
        status: crate::event::Status,
    },
    Error {
        message: &'a str,
    },
}

impl Decision {
    pub fn record(&self) -> DecisionRecord<'_> {
        let verdict = match &self.verdict {
            Verdict::Run { run } => VerdictRecord::Run { run_id: &run.id },
            Verdict::DryRun { run } => VerdictRecord::DryRun { run_id: &run.id },
            Verdict::Skipped {
                skip,
                message,
                dry_run,
            } => VerdictRecord::Skipped {
                skip,
                message,
                dry_run: *dry_run,
            },
            Verdict::IgnoredStatus { status } => VerdictRecord::IgnoredStatus { status: *status },
            Verdict::Error { message } => VerdictRecord::Error { message },
        };
        DecisionRecord {
            rule: &self.rule,
            target: &self.target,
            verdict,
        }
    }
}

/// A run as planned: which runbook, with which checked parameters, for what. Journaled before
/// anything executes, with the runbook's definition, so a resumed run runs what was planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub id: String,
    /// The rule that started it; empty for a run started by a person.
    pub rule: String,
    pub runbook: String,
    pub target: String,
    /// The triggering event; empty for a run started by a person.
    pub event_id: String,
    /// Who started it by hand (an API token's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub dry_run: bool,
    /// The incident its triggering event belongs to, if any: a success mitigates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<i64>,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub spec: Runbook,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub library: BTreeMap<String, Runbook>,
}

impl PlannedRun {
    /// The template and CEL variables of a run besides `params` and `steps`: the trigger's fields and
    /// `run`.
    pub fn globals(&self, event: Option<&Event>) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{json, Value};
        let mut globals = serde_json::Map::new();
        if let Some(event) = event {
            globals.insert("event".into(), json!(event));
            globals.insert("labels".into(), json!(event.labels));
            globals.insert("annotations".into(), json!(event.annotations));
            globals.insert("status".into(), Value::from(event.status.as_str()));
            globals.insert("fingerprint".into(), Value::from(event.fingerprint.clone()));
            globals.insert("source".into(), Value::from(event.source.clone()));
        }
        globals.insert(
            "run".into(),
            json!({
                "id": self.id,
                "rule": self.rule,
                "runbook": self.runbook,
                "target": self.target,
                "dry_run": self.dry_run,
                "started_by": self.started_by,
            }),
        );
        globals
    }
}

/// The template context for an event: `event`, plus `labels`, `annotations`, `status`,
/// `fingerprint` and `source` at the top level for brevity, and `params` once they are rendered.
///
/// Built once per decision as a minijinja value, so each template renders without re-serializing it.
pub fn context(event: &Event, params: Option<&BTreeMap<String, String>>) -> minijinja::Value {
    use minijinja::Value;
    let base = minijinja::context! {
        event => Value::from_serialize(event),
        labels => Value::from_serialize(&event.labels),
        annotations => Value::from_serialize(&event.annotations),
        status => event.status.as_str(),
        fingerprint => &event.fingerprint,
        source => &event.source,
    };
    match params {
        Some(params) => minijinja::context! { params => Value::from_serialize(params), ..base },
        None => base,
    }
}

/// What a rule can trigger on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An event as it arrives (rules without `on_incident`).
    Event,
    /// An incident's transition (rules whose `on_incident` lists it); the event is the incident's
    /// view from [`incident_event`].
    Incident(crate::incident::correlate::Transition),
}

/// Decides what every matching rule does with `event`.
pub fn decide(
    event: &Event,
    compiled: &Compiled,
    guards: &mut GuardState,
    global_dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    decide_trigger(Trigger::Event, event, compiled, guards, global_dry_run, now)
}

/// How rules triggered by an incident transition see the incident: the causing event's labels,
/// overlaid with the incident's group labels and `incident` and `transition`; its annotations
/// (the causing event's, such as `runbook_url`) add `incident_title` and, when known,
/// `recent_changes` (one line per change), the newest change as `last_change`, `last_change_at`
/// and `last_change_secs_before` (the seconds from it to the incident's start) and
/// `generator_url` (the alert's source, with its PromQL).
pub fn incident_event(
    incident: &crate::incident::Incident,
    transition: crate::incident::correlate::Transition,
    cause: &Event,
    changes: &[(DateTime<Utc>, String, String)],
) -> Event {
    let mut labels = cause.labels.clone();
    labels.extend(incident.labels.to_labels());
    labels.insert("incident".into(), incident.id.to_string());
    labels.insert("transition".into(), transition.as_str().into());
    let mut annotations = cause.annotations.clone();
    annotations.insert("incident_title".into(), incident.title.clone());
    if !changes.is_empty() {
        annotations.insert("recent_changes".into(), changes_text(changes));
    }
    // The newest change, so a rule can act on "the incident began right after a rollout":
    // `condition: int(annotations.last_change_secs_before) < 900`.
    if let Some((at, summary, _)) = changes.iter().max_by_key(|(at, _, _)| *at) {
        annotations.insert("last_change".into(), summary.clone());
        annotations.insert("last_change_at".into(), at.to_rfc3339());
        annotations.insert(
            "last_change_secs_before".into(),
            (incident.started_at - *at).num_seconds().to_string(),
        );
    }
    // Where the causing alert came from (Prometheus' link holds its PromQL expression).
    if let Some(url) = cause
        .data
        .as_ref()
        .and_then(|data| data.get("generatorURL"))
        .and_then(|url| url.as_str())
    {
        annotations.insert("generator_url".into(), url.to_string());
    }
    Event {
        id: cause.id.clone(),
        source: "homeostat".into(),
        kind: crate::EventKind::Info,
        status: crate::Status::Firing,
        fingerprint: format!("incident/{}", incident.id),
        labels,
        annotations,
        starts_at: Some(incident.started_at),
        ends_at: None,
        received_at: cause.received_at,
        data: serde_json::to_value(incident).ok(),
        ingested_by: None,
    }
}

/// Changes as text for a notice: `08:54:00 UTC checkout rolled out to v1.4.2; ...`.
pub fn changes_text(changes: &[(DateTime<Utc>, String, String)]) -> String {
    changes
        .iter()
        .map(|(at, summary, _)| format!("{} {summary}", at.format("%H:%M:%S UTC")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decides what every rule with this trigger does with `event`.
pub fn decide_trigger(
    trigger: Trigger,
    event: &Event,
    compiled: &Compiled,
    guards: &mut GuardState,
    global_dry_run: bool,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for rule in &compiled.rules {
        let wanted = match trigger {
            Trigger::Event => rule.on_incident.is_empty(),
            Trigger::Incident(transition) => rule.on_incident.contains(&transition),
        };
        if !wanted {
            continue;
        }
        let decision = match rule.matches(event) {
            Match::No => continue,
            Match::WrongStatus => Decision {
                rule: rule.name.clone(),
                target: String::new(),
                verdict: Verdict::IgnoredStatus {
                    status: event.status,
                },
            },
            Match::ConditionError { message } => Decision {
                rule: rule.name.clone(),
                target: String::new(),
                verdict: Verdict::Error { message },
            },
            Match::Yes => decide_rule(event, compiled, rule, guards, global_dry_run, now),
        };
        decisions.push(decision);
    }
    decisions
}

fn decide_rule(
    event: &Event,
    compiled: &Compiled,
    rule: &CompiledRule,
    guards: &mut GuardState,
    global_dry_run: bool,
    now: DateTime<Utc>,
) -> Decision {
    let error = |target: String, message: String| Decision {
        rule: rule.name.clone(),
        target,
        verdict: Verdict::Error { message },
    };
    let base = context(event, None);
    let mut params = BTreeMap::new();
    for (name, template) in &rule.params {
        match compiled.templates.render(template, &base) {
            Ok(value) => {
                params.insert(name.clone(), value);
            }
            Err(render_error) => {
                return error(String::new(), format!("param `{name}`: {render_error}"))
            }
        }
    }
    let full = context(event, Some(&params));
    let target = match compiled.templates.render(&rule.target, &full) {
        Ok(target) if !target.trim().is_empty() => target,
        Ok(_) => {
            return error(
                String::new(),
                "the target template gave an empty string".into(),
            )
        }
        Err(render_error) => return error(String::new(), format!("target: {render_error}")),
    };
    // A dry run is checked against, and counted in, the dry runs' own books (shadow mode).
    let dry_run = global_dry_run || rule.guards.dry_run;
    if let Err(skip) = guards.check(&rule.name, &rule.guards, &target, dry_run, now) {
        let message = if dry_run {
            format!("dry run would have been {skip}")
        } else {
            skip.to_string()
        };
        return Decision {
            rule: rule.name.clone(),
            target,
            verdict: Verdict::Skipped {
                skip,
                message,
                dry_run,
            },
        };
    }
    let given: BTreeMap<String, serde_json::Value> = params
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    let params = match coerce_params(rule.runbook.params(), &given) {
        Ok(params) => params,
        Err(param_error) => {
            return error(
                target,
                format!("runbook `{}`: {param_error}", rule.runbook.name()),
            )
        }
    };
    let run = PlannedRun {
        id: new_id(now),
        rule: rule.name.clone(),
        runbook: rule.runbook.name().to_string(),
        target: target.clone(),
        event_id: event.id.clone(),
        started_by: None,
        dry_run,
        incident: None,
        params,
        spec: rule.runbook.spec.clone(),
        library: rule.runbook.library.clone(),
    };
    guards.start(&rule.name, &rule.guards, &target, &run.id, dry_run, now);
    let verdict = if dry_run {
        Verdict::DryRun { run }
    } else {
        Verdict::Run { run }
    };
    Decision {
        rule: rule.name.clone(),
        target,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;
    use std::path::PathBuf;

    const CONFIG: &str = r#"
rules:
  - name: restart-api
    match: ['alertname="ApiDown"']
    target: "{{ labels.instance }}"
    params: {service: "{{ labels.job }}"}
    guards: {cooldown_secs: 300}
    steps:
      - name: restart
        action: exec
        with: {command: [systemctl, restart, "{{ params.service }}"]}
  - name: page
    match: ['severity="page"']
    on: [firing, resolved]
    guards: {dry_run: true}
    steps:
      - name: tell
        action: exec
        with: {command: [echo, "{{ status }}"]}
"#;

    fn compiled() -> Compiled {
        let config = crate::config::parse(&[(PathBuf::from("c.yaml"), CONFIG.into())]).unwrap();
        crate::rule::compile(&config).unwrap()
    }

    fn event(status: Status, labels: &[(&str, &str)]) -> Event {
        crate::event::test_event(status, labels)
    }

    #[test]
    fn plans_renders_and_guards_runs() {
        let compiled = compiled();
        let mut guards = GuardState::default();
        let now = DateTime::UNIX_EPOCH;
        let firing = event(
            Status::Firing,
            &[
                ("alertname", "ApiDown"),
                ("instance", "api-1"),
                ("job", "api"),
            ],
        );
        let decisions = decide(&firing, &compiled, &mut guards, false, now);
        assert_eq!(decisions.len(), 1);
        let Verdict::Run { run } = &decisions[0].verdict else {
            panic!("{decisions:?}")
        };
        assert_eq!(run.target, "api-1");
        assert_eq!(run.params["service"], "api");
        assert_eq!(run.spec.steps[0].name, "restart");
        guards.finish("restart-api", &run.id);

        let again = decide(&firing, &compiled, &mut guards, false, now);
        assert_eq!(again[0].verdict.label(), "skipped_cooldown");

        let resolved = event(
            Status::Resolved,
            &[
                ("alertname", "ApiDown"),
                ("instance", "api-1"),
                ("job", "api"),
            ],
        );
        let decisions = decide(&resolved, &compiled, &mut guards, false, now);
        assert_eq!(
            decisions[0].verdict,
            Verdict::IgnoredStatus {
                status: Status::Resolved
            }
        );
    }

    #[test]
    fn dry_run_and_template_errors_are_verdicts() {
        let compiled = compiled();
        let mut guards = GuardState::default();
        let paging = event(Status::Resolved, &[("severity", "page")]);
        let decisions = decide(&paging, &compiled, &mut guards, false, DateTime::UNIX_EPOCH);
        assert_eq!(decisions[0].verdict.label(), "dry_run");
        let no_instance = event(Status::Firing, &[("alertname", "ApiDown"), ("job", "api")]);
        let decisions = decide(
            &no_instance,
            &compiled,
            &mut guards,
            false,
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(decisions[0].verdict.label(), "error");
        let everything_dry = event(
            Status::Firing,
            &[("alertname", "ApiDown"), ("instance", "x"), ("job", "api")],
        );
        let decisions = decide(
            &everything_dry,
            &compiled,
            &mut guards,
            true,
            DateTime::UNIX_EPOCH,
        );
        assert_eq!(decisions[0].verdict.label(), "dry_run");
    }
}
