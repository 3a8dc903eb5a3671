//! The decide fold as data: each file in `fixtures/` is a config and a list of batches (events and
//! run ends in, at a time), each with what it must give: correlation verdicts, each rule's
//! decision, the runs dispatched, the commands the fold made itself, the notices and the
//! verifications. Runs are named by the order they were dispatched in (`run1`, `run2`, ...).
//! Optionally, the states of the incidents the batch changed, and what the journal says became of
//! each event (the verdicts the API shows, read back through the journal's own encoding).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Decider, RunEnded, Step};
use crate::event::{Event, EventKind, Labels, Status};
use crate::guard::{GuardState, LoopCounts};
use crate::incident::correlate::Correlator;
use crate::incident::Command;
use crate::journal::{Entry, RunStatus, Write};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// A homeostat config, as a user writes it.
    config: String,
    batches: Vec<Batch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    at: i64,
    /// The config from this batch on, the fold's state kept (as a reload or a restart keeps it).
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    events: Vec<FixtureEvent>,
    /// Runs that ended before this batch: `run1: succeeded`.
    #[serde(default)]
    ended: BTreeMap<String, RunStatus>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureEvent {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    status: Option<Status>,
    /// When it started firing, in seconds; the batch's time by default. The same `starts_at`
    /// again is a re-send (a repeat).
    #[serde(default)]
    starts_at: Option<i64>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    verdicts: Vec<String>,
    /// `rule verdict target`, in the order decided.
    #[serde(default)]
    decisions: Vec<String>,
    /// `runN rule target`, N counting every dispatch of the fixture.
    #[serde(default)]
    dispatch: Vec<String>,
    /// The dry runs completed at once: `rule target`.
    #[serde(default)]
    dry_runs: Vec<String>,
    /// Commands the fold made itself: `mitigate 1 run1`, `escalate 1`, `disable rule target`.
    #[serde(default)]
    commands: Vec<String>,
    /// `notifier key-prefix`.
    #[serde(default)]
    notices: Vec<String>,
    /// `incident runN`.
    #[serde(default)]
    verifications: Vec<String>,
    /// `incident state`, for each incident the batch wrote (as it left it), with `flapping`
    /// when it is; compared only when given.
    #[serde(default)]
    states: Option<Vec<String>>,
    /// `eN kind [rule]`: each event's verdicts as the journal gives them back; compared only when
    /// given.
    #[serde(default)]
    said: Option<Vec<String>>,
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn event(id: String, spec: &FixtureEvent, at: DateTime<Utc>) -> Event {
    let mut labels: Labels = spec.labels.clone();
    labels.insert("alertname".into(), spec.name.clone());
    Event {
        id,
        source: "fixture".into(),
        kind: EventKind::Alert,
        status: spec.status.unwrap_or(Status::Firing),
        fingerprint: crate::event::fingerprint(&labels),
        labels,
        annotations: Labels::new(),
        starts_at: Some(spec.starts_at.map_or(at, time)),
        ends_at: None,
        received_at: at,
        data: None,
        ingested_by: None,
    }
}

/// Names runs by dispatch order, and undoes it for run ends.
#[derive(Default)]
struct Runs {
    ids: Vec<String>,
    rules: BTreeMap<String, (String, Option<i64>)>,
}

impl Runs {
    fn name(&self, id: &str) -> String {
        self.ids
            .iter()
            .position(|known| known == id)
            .map(|index| format!("run{}", index + 1))
            .unwrap_or_else(|| id.to_string())
    }
}

fn observed(step: &Step, runs: &mut Runs, wanted: &Expect) -> Expect {
    let mut expect = Expect {
        verdicts: step
            .verdicts
            .iter()
            .map(|verdict| verdict.label().to_string())
            .collect(),
        decisions: step
            .decided
            .iter()
            .map(|decided| format!("{} {} {}", decided.rule, decided.label, decided.target))
            .collect(),
        ..Expect::default()
    };
    for dispatch in &step.dispatch {
        runs.ids.push(dispatch.run.id.clone());
        runs.rules.insert(
            dispatch.run.id.clone(),
            (dispatch.run.rule.clone(), dispatch.run.incident),
        );
        expect.dispatch.push(format!(
            "{} {} {}",
            runs.name(&dispatch.run.id),
            dispatch.run.rule,
            dispatch.run.target
        ));
    }
    for dry_run in &step.dry_runs {
        let target = step
            .decided
            .iter()
            .find(|decided| decided.rule == dry_run.rule && decided.label == "dry_run")
            .map(|decided| decided.target.clone())
            .unwrap_or_default();
        expect.dry_runs.push(format!("{} {target}", dry_run.rule));
    }
    for write in &step.writes {
        let Write::Event(encoded) = write else {
            continue;
        };
        let event = encoded.event();
        if event.kind != EventKind::Command {
            continue;
        }
        expect.commands.push(match Command::from_event(event) {
            Some(Command::Mitigate {
                incident, run_id, ..
            }) => format!("mitigate {incident} {}", runs.name(&run_id)),
            Some(Command::Escalate { incident, .. }) => format!("escalate {incident}"),
            Some(Command::DisableRule { rule, target, .. }) => format!("disable {rule} {target}"),
            Some(Command::Settle { incident, .. }) => format!("settle {incident}"),
            other => format!("{other:?}"),
        });
    }
    for notice in &step.notices {
        let prefix = notice.key.split('/').next().unwrap_or_default();
        expect.notices.push(format!("{} {prefix}", notice.notifier));
    }
    for verification in &step.verifications {
        expect.verifications.push(format!(
            "{} {}",
            verification.incident,
            runs.name(&verification.run_id)
        ));
    }
    if wanted.states.is_some() {
        let mut states = BTreeMap::new();
        for write in &step.writes {
            if let Write::Incident(incident) = write {
                let flapping = if incident.flapping { " flapping" } else { "" };
                states.insert(
                    incident.id,
                    format!("{} {}{flapping}", incident.id, incident.state.as_str()),
                );
            }
        }
        expect.states = Some(states.into_values().collect());
    }
    if wanted.said.is_some() {
        let mut said = Vec::new();
        for write in &step.writes {
            let Some(row) = write.row().filter(|row| row.kind == "decision") else {
                continue;
            };
            let body = serde_json::from_str(&row.body).expect("a decision row is JSON");
            let entry = Entry::from_row(row.kind, body).expect("a decision row reads back");
            for verdict in entry.verdicts() {
                let kind = serde_json::to_value(verdict.kind).expect("a kind");
                let event = row.event_id.as_deref().unwrap_or_default();
                said.push(match verdict.rule {
                    Some(rule) => format!("{event} {} {rule}", kind.as_str().unwrap_or_default()),
                    None => format!("{event} {}", kind.as_str().unwrap_or_default()),
                });
            }
        }
        expect.said = Some(said);
    }
    expect
}

fn compile(name: &str, text: &str) -> Arc<crate::rule::Compiled> {
    let config = crate::config::parse(&[(PathBuf::from("fixture.yaml"), text.to_string())])
        .unwrap_or_else(|diagnostics| panic!("{name}: the config: {diagnostics:?}"));
    Arc::new(
        crate::rule::compile(&config)
            .unwrap_or_else(|diagnostics| panic!("{name}: the config: {diagnostics:?}")),
    )
}

fn run(name: &str, fixture: &Fixture) {
    let compiled = compile(name, &fixture.config);
    let correlator = Correlator::new(Arc::clone(&compiled.incidents), 0);
    let mut decider = Decider::new(
        Arc::clone(&compiled),
        GuardState::default(),
        correlator,
        LoopCounts::default(),
        time(0),
    );
    let mut runs = Runs::default();
    let mut next_event = 0;
    for (index, batch) in fixture.batches.iter().enumerate() {
        let at = time(batch.at);
        if let Some(text) = &batch.config {
            let Decider {
                guards,
                correlator,
                loops,
                ..
            } = decider;
            decider = Decider::new(compile(name, text), guards, correlator, loops, at);
        }
        let events: Vec<Event> = batch
            .events
            .iter()
            .map(|spec| {
                next_event += 1;
                event(format!("e{next_event}"), spec, at)
            })
            .collect();
        let ended: Vec<RunEnded> = batch
            .ended
            .iter()
            .map(|(run, status)| {
                let number: usize = run
                    .strip_prefix("run")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: `{run}` is not `runN`"));
                let id = runs
                    .ids
                    .get(number - 1)
                    .unwrap_or_else(|| panic!("{name}: no {run} was dispatched"))
                    .clone();
                let (rule, incident) = runs.rules[&id].clone();
                RunEnded {
                    rule,
                    run_id: id,
                    incident,
                    status: Some(*status),
                    at,
                }
            })
            .collect();
        let refs: Vec<&Event> = events.iter().collect();
        let step = decider.apply(&refs, &ended, at);
        let actual = observed(&step, &mut runs, &batch.expect);
        assert_eq!(
            actual,
            batch.expect,
            "{name}, batch {} (at {}s)",
            index + 1,
            batch.at
        );
    }
}

#[test]
fn every_fixture_gives_its_decisions_and_effects() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pipeline/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("fixtures folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", folder.display());
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let fixture: Fixture = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        run(&path.display().to_string(), &fixture);
    }
}
