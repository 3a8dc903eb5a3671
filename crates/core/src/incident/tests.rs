//! Correlation as data: each file in `fixtures/` is a config, silences, an event stream, and the
//! verdicts and incidents it must give. Streams marked `any_order` must give the same incidents
//! (membership, state, counts) whatever order their events arrive in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde::Deserialize;

use super::correlate::{Correlator, Settings};
use super::silence::Silence;
use super::{Change, Command, IncidentId};
use crate::config::incidents::Incidents;
use crate::event::{Event, EventKind, Labels, Status};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    config: Option<Incidents>,
    #[serde(default)]
    silences: Vec<FixtureSilence>,
    events: Vec<FixtureEvent>,
    #[serde(default)]
    verdicts: Vec<String>,
    incidents: Vec<ExpectedIncident>,
    /// The same incidents must come out of any arrival order of `events`.
    #[serde(default)]
    any_order: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureSilence {
    id: String,
    matchers: Vec<String>,
    from: i64,
    to: i64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureEvent {
    at: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    kind: Option<EventKind>,
    /// `starts_at` in seconds; defaults to `at` for alerts.
    #[serde(default)]
    starts_at: Option<i64>,
    #[serde(default)]
    command: Option<Command>,
    /// Run the sweep at `at` and apply the commands it returns (their verdicts are not listed).
    #[serde(default)]
    sweep: bool,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
#[serde(deny_unknown_fields)]
struct ExpectedIncident {
    #[serde(default)]
    id: Option<IncidentId>,
    state: String,
    /// Member alert names (`alertname` or `reason`), in any order.
    members: BTreeSet<String>,
    firing: u32,
    #[serde(default)]
    flapping: bool,
    #[serde(default)]
    reopened: u32,
    #[serde(default)]
    escalated: bool,
    #[serde(default)]
    mitigated: bool,
    #[serde(default)]
    acknowledged_by: Option<String>,
    #[serde(default)]
    resolved_by: Option<String>,
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn event(index: usize, spec: &FixtureEvent) -> Event {
    let at = time(spec.at);
    if let Some(command) = &spec.command {
        return command.clone().into_event(format!("e{index}"), None, at);
    }
    let mut labels: Labels = spec.labels.clone();
    let kind = spec.kind.unwrap_or(EventKind::Alert);
    if let Some(name) = &spec.name {
        let key = if kind == EventKind::Info {
            "reason"
        } else {
            "alertname"
        };
        labels.insert(key.into(), name.clone());
    }
    Event {
        id: format!("e{index}"),
        source: "fixture".into(),
        kind,
        status: spec.status.unwrap_or(Status::Firing),
        fingerprint: crate::event::fingerprint(&labels),
        labels,
        annotations: Labels::new(),
        starts_at: (kind == EventKind::Alert).then(|| time(spec.starts_at.unwrap_or(spec.at))),
        ends_at: None,
        received_at: at,
        data: None,
        ingested_by: None,
    }
}

struct Outcome {
    verdicts: Vec<String>,
    incidents: Vec<ExpectedIncident>,
}

fn run(fixture: &Fixture, order: &[usize]) -> Outcome {
    let settings = Settings::compile(&fixture.config.clone().unwrap_or_default())
        .unwrap_or_else(|(field, message)| panic!("config {field}: {message}"));
    let mut correlator = Correlator::new(Arc::new(settings), 0);
    for silence in &fixture.silences {
        correlator
            .set_silence(Silence {
                id: silence.id.clone(),
                matchers: silence.matchers.clone(),
                starts_at: time(silence.from),
                ends_at: time(silence.to),
                created_by: "fixture".into(),
                comment: "fixture".into(),
                created_at: time(silence.from),
                expired_by: None,
            })
            .expect("fixture silence");
    }
    let mut verdicts = Vec::new();
    let mut members: BTreeMap<IncidentId, BTreeSet<String>> = BTreeMap::new();
    let mut rows = BTreeMap::new();
    let mut apply = |correlator: &mut Correlator, event: &Event| {
        let observed = correlator.observe(event);
        for change in observed.changes {
            match change {
                Change::Incident(incident) => {
                    rows.insert(incident.id, incident);
                }
                Change::Member(member) => {
                    let name = member
                        .labels
                        .get("alertname")
                        .or_else(|| member.labels.get("reason"))
                        .cloned()
                        .unwrap_or_default();
                    members.entry(member.incident).or_default().insert(name);
                }
                Change::Timeline(_) => {}
            }
        }
        observed.verdict.map(|verdict| verdict.label().to_string())
    };
    for (position, index) in order.iter().enumerate() {
        let spec = &fixture.events[*index];
        if spec.sweep {
            for (offset, command) in correlator.sweep(time(spec.at)).into_iter().enumerate() {
                let event =
                    command.into_event(format!("sweep{position}.{offset}"), None, time(spec.at));
                apply(&mut correlator, &event);
            }
            continue;
        }
        if let Some(verdict) = apply(&mut correlator, &event(*index, spec)) {
            verdicts.push(verdict);
        }
    }
    let incidents = rows
        .into_values()
        .map(|incident| ExpectedIncident {
            id: Some(incident.id),
            state: incident.state.as_str().to_string(),
            members: members.get(&incident.id).cloned().unwrap_or_default(),
            firing: incident.members_firing,
            flapping: incident.flapping,
            reopened: incident.reopened,
            escalated: incident.escalated,
            mitigated: incident.mitigated_at.is_some(),
            acknowledged_by: incident.acknowledged_by,
            resolved_by: incident.resolved_by,
        })
        .collect();
    Outcome {
        verdicts,
        incidents,
    }
}

fn fixtures() -> Vec<(String, Fixture)> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/incident/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("fixtures folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", folder.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read fixture");
            let fixture: Fixture = serde_yaml_ng::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                fixture,
            )
        })
        .collect()
}

#[test]
fn every_fixture_gives_its_verdicts_and_incidents() {
    for (name, fixture) in fixtures() {
        let order: Vec<usize> = (0..fixture.events.len()).collect();
        let outcome = run(&fixture, &order);
        if !fixture.verdicts.is_empty() {
            assert_eq!(outcome.verdicts, fixture.verdicts, "{name}: verdicts");
        }
        let mut expected = fixture.incidents.clone();
        let mut actual = outcome.incidents;
        if expected.iter().all(|incident| incident.id.is_none()) {
            actual.iter_mut().for_each(|incident| incident.id = None);
        }
        expected.sort();
        actual.sort();
        assert_eq!(actual, expected, "{name}: incidents");
    }
}

/// Incidents without their numbers (which follow arrival order), for comparing orders.
fn unnumbered(mut incidents: Vec<ExpectedIncident>) -> Vec<ExpectedIncident> {
    incidents.iter_mut().for_each(|incident| incident.id = None);
    incidents.sort();
    incidents
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_arrival_order_within_the_window_gives_the_same_incidents(seed in any::<u64>()) {
        for (name, fixture) in fixtures().into_iter().filter(|(_, fixture)| fixture.any_order) {
            let mut order: Vec<usize> = (0..fixture.events.len()).collect();
            // A seeded Fisher-Yates shuffle: proptest shrinks the seed, the order follows from it.
            let mut state = seed | 1;
            for index in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(index, (state % (index as u64 + 1)) as usize);
            }
            let in_order = run(&fixture, &(0..fixture.events.len()).collect::<Vec<_>>());
            let shuffled = run(&fixture, &order);
            prop_assert_eq!(
                unnumbered(shuffled.incidents),
                unnumbered(in_order.incidents),
                "{}: order {:?}", name, order
            );
        }
    }
}

#[test]
fn a_snapshot_restores_the_same_decisions() {
    for (name, fixture) in fixtures() {
        let settings = Arc::new(
            Settings::compile(&fixture.config.clone().unwrap_or_default()).expect("config"),
        );
        let events: Vec<Event> = fixture
            .events
            .iter()
            .enumerate()
            .filter(|(_, spec)| !spec.sweep)
            .map(|(index, spec)| event(index, spec))
            .collect();
        for split in 0..=events.len() {
            let mut live = Correlator::new(Arc::clone(&settings), 0);
            let mut restored = Correlator::new(Arc::clone(&settings), 0);
            for event in &events[..split] {
                live.observe(event);
                restored.observe(event);
            }
            let mut restored = Correlator::restore(Arc::clone(&settings), &restored.snapshot())
                .unwrap_or_else(|| panic!("{name}: snapshot at {split} does not restore"));
            for event in &events[split..] {
                assert_eq!(
                    restored.observe(event),
                    live.observe(event),
                    "{name}: after a snapshot at {split}"
                );
            }
        }
    }
}

#[test]
fn an_incident_knows_the_recent_changes_to_its_group() {
    let config = Incidents {
        change_lookback_secs: 600,
        ..Incidents::default()
    };
    let mut correlator = Correlator::new(Arc::new(Settings::compile(&config).expect("config")), 0);
    let change = |index: usize, at: i64, service: &str, summary: &str| {
        let mut event = event(
            index,
            &FixtureEvent {
                at,
                name: None,
                labels: [("service".to_string(), service.to_string())].into(),
                status: None,
                kind: Some(EventKind::Change),
                starts_at: None,
                command: None,
                sweep: false,
            },
        );
        event.annotations.insert("summary".into(), summary.into());
        event
    };
    correlator.observe(&change(
        0,
        0,
        "checkout",
        "checkout v1.4.1, too old to matter",
    ));
    correlator.observe(&change(1, 700, "checkout", "checkout rolled out to v1.4.2"));
    correlator.observe(&change(2, 710, "search", "search rolled out to v9"));
    let alert = event(
        3,
        &FixtureEvent {
            at: 900,
            name: Some("HighErrorRate".into()),
            labels: [("service".to_string(), "checkout".to_string())].into(),
            status: None,
            kind: None,
            starts_at: None,
            command: None,
            sweep: false,
        },
    );
    correlator.observe(&alert);
    let changes = correlator.recent_changes(1);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].1, "checkout rolled out to v1.4.2");
    assert_eq!(changes[0].2, "e1");
    let restored = Correlator::restore(
        Arc::new(Settings::compile(&config).expect("config")),
        &correlator.snapshot(),
    )
    .expect("restores");
    assert_eq!(
        restored.recent_changes(1),
        changes,
        "changes survive a snapshot"
    );
}

/// CloudEvents are told apart by `source` and `id`: two ids are two events, and a re-delivery of
/// one is a repeat that nothing acts on again.
#[test]
fn cloud_events_are_identified_by_source_and_id() {
    let settings = Settings::compile(&Incidents::default()).expect("config");
    let mut correlator = Correlator::new(Arc::new(settings), 0);
    let event = |id: &str, second: i64| {
        let body = format!(
            r#"{{"specversion": "1.0", "id": "{id}", "source": "/ci", "type": "dev.ci.failed",
                "data": {{"labels": {{"service": "checkout"}}}}}}"#
        );
        let at = DateTime::from_timestamp(second, 0).expect("time");
        let mut events = crate::ingest::native::parse(body.as_bytes(), "api", at).expect("parses");
        events.remove(0)
    };
    let verdict = |correlator: &mut Correlator, event: &Event| {
        format!("{:?}", correlator.observe(event).verdict.expect("verdict"))
    };
    let first = verdict(&mut correlator, &event("a-1", 10));
    assert!(!first.starts_with("Repeat"), "{first}");
    let other = verdict(&mut correlator, &event("a-2", 11));
    assert!(
        !other.starts_with("Repeat"),
        "another id is another event: {other}"
    );
    let again = verdict(&mut correlator, &event("a-1", 12));
    assert!(
        again.starts_with("Repeat"),
        "a re-delivery repeats: {again}"
    );
}
