//! The conformance suite every [`Store`] backend must pass: the same assertions against SQLite in every
//! `cargo test`, and against PostgreSQL when that backend is built.

use chrono::{DateTime, Duration, Utc};
use homeostat_core::decide::PlannedRun;
use homeostat_core::event::{EventKind, Labels, Status};
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member, State, TimelineEntry};
use homeostat_core::Event;

use homeostat_core::runbook::{Input, Record, RunEnd};

use homeostat_core::incident::TimelineKind;
use homeostat_core::journal::{Entry, OutcomeStatus, StepStatus};

use crate::{
    steps_from_journal, EventQuery, IncidentQuery, JournalEntry, RunQuery, RunStatus, Store, Write,
};

fn event(id: &str, fingerprint: &str, status: Status, at: DateTime<Utc>) -> Event {
    Event {
        id: id.into(),
        source: "test".into(),
        kind: EventKind::Alert,
        status,
        fingerprint: fingerprint.into(),
        labels: [("alertname".to_string(), "A".to_string())].into(),
        annotations: Default::default(),
        starts_at: Some(at),
        ends_at: None,
        received_at: at,
        data: None,
        ingested_by: None,
    }
}

fn run(id: &str, event_id: &str) -> PlannedRun {
    PlannedRun {
        id: id.into(),
        rule: "r".into(),
        runbook: "rule:r".into(),
        target: "t".into(),
        event_id: event_id.into(),
        started_by: None,
        dry_run: false,
        incident: None,
        params: Default::default(),
        spec: homeostat_core::config::Runbook {
            name: "rule:r".into(),
            description: None,
            params: Default::default(),
            steps: vec![],
            outputs: Default::default(),
        },
        library: Default::default(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn incident(id: IncidentId, service: &str, state: State, at: DateTime<Utc>) -> Incident {
    Incident {
        id,
        state,
        title: format!("HighLatency on {service}"),
        group_key: format!("{{service=\"{service}\"}}"),
        labels: labels(&[("service", service)]).into(),
        flapping: false,
        escalated: false,
        members_firing: 1,
        members_total: 1,
        reopened: 0,
        started_at: at - Duration::seconds(30),
        opened_at: at,
        acknowledged_at: None,
        acknowledged_by: None,
        mitigated_at: None,
        resolved_at: None,
        resolved_by: None,
        escalated_at: None,
        updated_at: at,
    }
}

fn member(incident: IncidentId, fingerprint: &str, event_id: &str, at: DateTime<Utc>) -> Member {
    Member {
        incident,
        fingerprint: fingerprint.into(),
        source: "test".into(),
        status: Status::Firing,
        labels: labels(&[("alertname", "HighLatency"), ("service", "checkout")]),
        annotations: Default::default(),
        first_event_id: event_id.into(),
        last_event_id: event_id.into(),
        first_seen: at,
        last_seen: at,
        starts_at: None,
        generator_url: None,
    }
}

fn timeline(
    incident: IncidentId,
    kind: TimelineKind,
    event_id: Option<&str>,
    at: DateTime<Utc>,
) -> Write {
    Write::Timeline(TimelineEntry {
        incident,
        kind,
        at,
        event_id: event_id.map(str::to_string),
        summary: format!("{kind} {incident}"),
        detail: serde_json::Value::Null,
    })
}

fn silence(id: &str, created_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Silence {
    Silence {
        id: id.into(),
        matchers: vec![
            r#"service="checkout""#.into(),
            r#"severity=~"warn|info""#.into(),
        ],
        starts_at: created_at,
        ends_at,
        created_by: "alice".into(),
        comment: "maintenance".into(),
        created_at,
        expired_by: None,
    }
}

/// Runs every check against a fresh, empty store. Panics with a message on the first failure.
pub async fn run_all(store: &dyn Store) {
    let t0 = DateTime::UNIX_EPOCH + Duration::days(20_000);
    events_get_consecutive_sequence_numbers(store, t0).await;
    snapshots_and_latest_events_per_source(store, t0).await;
    runs_and_steps_round_trip(store, t0).await;
    cursors_persist(store).await;
    events_filter_by_kind_label_and_time(store, t0).await;
    incidents_upsert_and_filter(store, t0).await;
    members_keep_how_they_joined(store, t0).await;
    incident_timeline_gathers_its_journal(store, t0).await;
    silences_upsert_and_expire(store, t0).await;
    lists_page_by_cursor(store, t0).await;
}

async fn events_get_consecutive_sequence_numbers(store: &dyn Store, t0: DateTime<Utc>) {
    let first = store
        .commit(&[
            Write::Event(event("e1", "f1", Status::Firing, t0).into()),
            Write::Event(event("e2", "f2", Status::Firing, t0).into()),
        ])
        .await
        .expect("commit two events");
    assert_eq!(first.event_seqs, vec![1, 2]);
    let second = store
        .commit(&[Write::Event(event("e3", "f1", Status::Resolved, t0).into())])
        .await
        .expect("commit");
    assert_eq!(second.event_seqs, vec![3]);
    let all = store
        .events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read events");
    assert_eq!(
        all.iter().map(|record| record.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let newest = store
        .events(&EventQuery {
            limit: 1,
            newest_first: true,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(newest[0].event.id, "e3");
    let after = store
        .events(&EventQuery {
            limit: 10,
            after_seq: Some(2),
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(after.len(), 1);
    assert_eq!(
        store
            .event("e2")
            .await
            .expect("read")
            .expect("exists")
            .event,
        event("e2", "f2", Status::Firing, t0)
    );
    assert!(store.event("nope").await.expect("read").is_none());
    assert_eq!(store.event_count().await.expect("count"), 3);
    // A failed batch (duplicate id) must leave nothing behind and consume no sequence numbers.
    let failed = store
        .commit(&[
            Write::Event(event("e4", "f4", Status::Firing, t0).into()),
            Write::Event(event("e1", "f1", Status::Firing, t0).into()),
        ])
        .await;
    assert!(failed.is_err(), "a duplicate event id fails the batch");
    assert!(
        store.event("e4").await.expect("read").is_none(),
        "the batch is atomic"
    );
    let next = store
        .commit(&[Write::Event(event("e5", "f5", Status::Firing, t0).into())])
        .await
        .expect("commit");
    assert_eq!(next.event_seqs, vec![4]);
}

async fn snapshots_and_latest_events_per_source(store: &dyn Store, t0: DateTime<Utc>) {
    assert_eq!(store.snapshot("decide").await.expect("read"), None);
    store
        .commit(&[Write::Snapshot {
            name: "decide".into(),
            seq: 2,
            body: vec![1, 2, 3],
        }])
        .await
        .expect("commit");
    store
        .commit(&[Write::Snapshot {
            name: "decide".into(),
            seq: 4,
            body: vec![4],
        }])
        .await
        .expect("commit");
    assert_eq!(
        store.snapshot("decide").await.expect("read"),
        Some((4, vec![4]))
    );
    let mut other = event("p1", "fp", Status::Firing, t0);
    other.source = "probe".into();
    store
        .commit(&[Write::Event(other.into())])
        .await
        .expect("commit");
    let latest = store
        .last_event("test")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(latest.event.id, "e5");
    assert_eq!(
        store
            .last_event("probe")
            .await
            .expect("read")
            .expect("exists")
            .event
            .id,
        "p1"
    );
    assert!(store.last_event("nobody").await.expect("read").is_none());
}

async fn runs_and_steps_round_trip(store: &dyn Store, t0: DateTime<Utc>) {
    let later = t0 + Duration::seconds(5);
    store
        .commit(&[
            Write::Decisions {
                event_id: "e1".into(),
                at: t0,
                correlation: None,
                decisions: vec![],
            },
            Write::RunStarted {
                run: run("run1", "e1"),
                at: t0,
            },
            Write::RunRecord {
                run_id: "run1".into(),
                record: Record::StepStarted {
                    step: "s".into(),
                    name: "s".into(),
                    attempt: 1,
                    action: "exec".into(),
                    inputs: serde_json::json!({"command": ["true"]}),
                    resumed: false,
                },
                at: t0,
            },
        ])
        .await
        .expect("commit run start");
    let running = store.run("run1").await.expect("read").expect("exists");
    assert_eq!(running.status, RunStatus::Running);
    let unfinished = steps_from_journal(&store.journal_for_run("run1").await.expect("read"));
    assert_eq!(unfinished[0].status, StepStatus::Running);
    store
        .commit(&[
            Write::RunInput {
                run_id: "run1".into(),
                input: Input::Outcome {
                    step: "s".into(),
                    attempt: 1,
                    status: OutcomeStatus::Succeeded,
                    output: serde_json::json!({"exit_code": 0}),
                    error: None,
                },
                outputs: Some(serde_json::json!({"code": "0"})),
                at: later,
            },
            Write::RunFinished {
                run_id: "run1".into(),
                end: RunEnd {
                    status: RunStatus::Succeeded,
                    error: None,
                    undone: vec![],
                    outputs: serde_json::Value::Null,
                    rejected: None,
                },
                at: later,
            },
        ])
        .await
        .expect("commit run end");
    let finished = store.run("run1").await.expect("read").expect("exists");
    assert_eq!(
        (finished.status, finished.finished_at),
        (RunStatus::Succeeded, Some(later))
    );
    let steps = steps_from_journal(&store.journal_for_run("run1").await.expect("read"));
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].status, StepStatus::Succeeded);
    assert_eq!(steps[0].output, Some(serde_json::json!({"exit_code": 0})));
    assert_eq!(steps[0].outputs, Some(serde_json::json!({"code": "0"})));
    assert_eq!(
        steps[0].inputs,
        Some(serde_json::json!({"command": ["true"]}))
    );
    let inputs = store.journal_for_run("run1").await.expect("read");
    let replayed: Vec<&Input> = inputs
        .iter()
        .filter_map(|entry| match &entry.entry {
            Entry::StepFinished { input, .. } => Some(input),
            _ => None,
        })
        .collect();
    assert!(matches!(&replayed[..], [Input::Outcome { attempt: 1, .. }]));
    let for_event = store.journal_for_event("e1").await.expect("read");
    assert_eq!(
        for_event
            .iter()
            .map(|entry| entry.entry.kind())
            .collect::<Vec<_>>(),
        vec!["decision", "run_started"]
    );
    let decisions = store
        .decisions_for_events(&["e1".to_string(), "nonexistent".to_string()])
        .await
        .expect("read");
    assert_eq!(
        decisions
            .iter()
            .map(|entry| (entry.entry.kind(), entry.event_id.as_deref()))
            .collect::<Vec<_>>(),
        vec![("decision", Some("e1"))],
        "only the decision rows of the events asked for"
    );
    assert!(store
        .decisions_for_events(&[])
        .await
        .expect("read")
        .is_empty());
    let runs = store
        .runs(&RunQuery {
            limit: 10,
            status: Some(RunStatus::Succeeded),
            ..Default::default()
        })
        .await;
    assert_eq!(runs.expect("read").len(), 1);
    let none = store
        .runs(&RunQuery {
            limit: 10,
            status: Some(RunStatus::Failed),
            ..Default::default()
        })
        .await;
    assert!(none.expect("read").is_empty());
}

async fn cursors_persist(store: &dyn Store) {
    assert_eq!(store.cursor("decide").await.expect("read"), 0);
    store
        .commit(&[Write::Cursor {
            name: "decide".into(),
            seq: 7,
        }])
        .await
        .expect("commit");
    store
        .commit(&[Write::Cursor {
            name: "decide".into(),
            seq: 9,
        }])
        .await
        .expect("commit");
    assert_eq!(store.cursor("decide").await.expect("read"), 9);
}

async fn events_filter_by_kind_label_and_time(store: &dyn Store, t0: DateTime<Utc>) {
    let later = t0 + Duration::minutes(10);
    let change = |id: &str, service: &str, at: DateTime<Utc>| {
        let mut event = event(id, id, Status::Firing, at);
        event.kind = EventKind::Change;
        event.source = "deploys".into();
        event.labels = labels(&[("service", service)]);
        Write::Event(event.into())
    };
    let mut alert = event("k-alert", "k-alert", Status::Firing, later);
    alert.labels = labels(&[("service", "checkout")]);
    store
        .commit(&[
            change("k-old", "checkout", t0 - Duration::hours(1)),
            change("k-checkout", "checkout", later),
            change("k-payments", "payments", later),
            Write::Event(alert.into()),
        ])
        .await
        .expect("commit");
    let ids = |records: Vec<crate::EventRecord>| {
        records
            .into_iter()
            .map(|record| record.event.id)
            .collect::<Vec<_>>()
    };
    let read = |query: EventQuery| async move { ids(store.events(&query).await.expect("read")) };
    assert_eq!(
        read(EventQuery {
            limit: 10,
            kind: Some(EventKind::Change),
            newest_first: true,
            ..Default::default()
        })
        .await,
        vec!["k-payments", "k-checkout", "k-old"]
    );
    assert_eq!(
        read(EventQuery {
            limit: 10,
            kind: Some(EventKind::Change),
            label: Some(("service".into(), "checkout".into())),
            received_after: Some(t0),
            ..Default::default()
        })
        .await,
        vec!["k-checkout"],
        "recent changes to the same service"
    );
    assert_eq!(
        read(EventQuery {
            limit: 10,
            label: Some(("service".into(), "checkout".into())),
            ..Default::default()
        })
        .await,
        vec!["k-old", "k-checkout", "k-alert"],
        "a label filter alone matches every kind"
    );
    assert_eq!(
        read(EventQuery {
            limit: 10,
            kind: Some(EventKind::Alert),
            received_after: Some(later),
            ..Default::default()
        })
        .await,
        vec!["k-alert"]
    );
    assert!(read(EventQuery {
        limit: 10,
        kind: Some(EventKind::Change),
        label: Some(("service".into(), "search".into())),
        ..Default::default()
    })
    .await
    .is_empty());
}

async fn incidents_upsert_and_filter(store: &dyn Store, t0: DateTime<Utc>) {
    assert_eq!(store.incidents_max_id().await.expect("read"), 0);
    assert!(store.incident(1).await.expect("read").is_none());
    let later = t0 + Duration::minutes(5);
    store
        .commit(&[
            Write::Incident(incident(1, "checkout", State::Open, t0)),
            Write::Incident(incident(2, "payments", State::Resolved, t0)),
        ])
        .await
        .expect("commit");
    let acknowledged = Incident {
        state: State::Acknowledged,
        title: "HighLatency on checkout and 1 other".into(),
        flapping: true,
        members_firing: 2,
        members_total: 3,
        reopened: 1,
        acknowledged_at: Some(later),
        acknowledged_by: Some("alice".into()),
        mitigated_at: Some(later),
        escalated_at: Some(later),
        escalated: true,
        updated_at: later,
        ..incident(1, "checkout", State::Open, t0)
    };
    let mut resolved = incident(3, "checkout", State::Resolved, later);
    resolved.resolved_at = Some(later);
    resolved.resolved_by = Some("bob".into());
    store
        .commit(&[
            Write::Incident(acknowledged.clone()),
            Write::Incident(incident(3, "checkout", State::Open, later)),
            // The last write of an incident in a batch is the one that stays.
            Write::Incident(resolved.clone()),
        ])
        .await
        .expect("commit");
    assert_eq!(
        store.incident(1).await.expect("read"),
        Some(acknowledged),
        "an upsert replaces the row"
    );
    assert_eq!(store.incident(3).await.expect("read"), Some(resolved));
    assert_eq!(store.incidents_max_id().await.expect("read"), 3);
    let ids = |query: IncidentQuery| async move {
        store
            .incidents(&query)
            .await
            .expect("read")
            .into_iter()
            .map(|incident| incident.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            ..Default::default()
        })
        .await,
        vec![3, 2, 1]
    );
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            open_only: true,
            ..Default::default()
        })
        .await,
        vec![1],
        "acknowledged is open; resolved is not"
    );
    let checkout = Some(("service".to_string(), "checkout".to_string()));
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            label: checkout.clone(),
            ..Default::default()
        })
        .await,
        vec![3, 1]
    );
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            label: checkout,
            opened_after: Some(t0 + Duration::seconds(1)),
            ..Default::default()
        })
        .await,
        vec![3]
    );
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            group_key: Some(r#"{service="payments"}"#.into()),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        ids(IncidentQuery::default()).await,
        vec![3],
        "limit 0 reads one"
    );
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            state: Some(State::Resolved),
            ..Default::default()
        })
        .await,
        vec![3, 2]
    );
    assert_eq!(
        ids(IncidentQuery {
            limit: 10,
            state: Some(State::Acknowledged),
            ..Default::default()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        store.incident_counts().await.expect("read"),
        crate::IncidentCounts {
            open: 0,
            acknowledged: 1,
            mitigated: 0,
            resolved: 2,
        }
    );
}

async fn members_keep_how_they_joined(store: &dyn Store, t0: DateTime<Utc>) {
    let later = t0 + Duration::minutes(1);
    let mut first = member(1, "fa", "m-e1", later);
    first.starts_at = Some(later - Duration::seconds(30));
    store
        .commit(&[
            Write::IncidentMember(first.clone()),
            // Joined earlier, so it sorts first.
            Write::IncidentMember(member(1, "fb", "m-e0", t0)),
            Write::IncidentMember(member(2, "fa", "m-other", t0)),
        ])
        .await
        .expect("commit");
    let again = Member {
        status: Status::Resolved,
        labels: labels(&[
            ("alertname", "HighLatency"),
            ("service", "checkout"),
            ("pod", "p1"),
        ]),
        annotations: labels(&[("summary", "slow")]),
        first_event_id: "m-e2".into(),
        last_event_id: "m-e2".into(),
        first_seen: later + Duration::minutes(1),
        last_seen: later + Duration::minutes(1),
        starts_at: Some(later),
        generator_url: Some("http://prometheus/graph".into()),
        ..first.clone()
    };
    store
        .commit(&[Write::IncidentMember(again.clone())])
        .await
        .expect("commit");
    let expected = Member {
        first_event_id: "m-e1".into(),
        first_seen: later,
        starts_at: first.starts_at,
        ..again.clone()
    };
    let members = store.incident_members(1).await.expect("read");
    assert_eq!(
        members
            .iter()
            .map(|member| member.fingerprint.as_str())
            .collect::<Vec<_>>(),
        vec!["fb", "fa"]
    );
    assert_eq!(members[1], expected, "the upsert keeps how it joined");
    // Two writes in one batch end as two commits would; a first write without `starts_at` takes
    // the later one's.
    let mut late_start = member(1, "fc", "m-e3", later);
    late_start.last_event_id = "m-e4".into();
    late_start.starts_at = Some(t0);
    store
        .commit(&[
            Write::IncidentMember(member(1, "fc", "m-e3", later)),
            Write::IncidentMember(Member {
                first_event_id: "m-e4".into(),
                first_seen: later + Duration::minutes(1),
                ..late_start.clone()
            }),
        ])
        .await
        .expect("commit");
    let members = store.incident_members(1).await.expect("read");
    assert_eq!(members.len(), 3);
    assert_eq!(members[2], late_start);
    assert_eq!(store.incident_members(2).await.expect("read").len(), 1);
    assert!(store.incident_members(99).await.expect("read").is_empty());
}

async fn incident_timeline_gathers_its_journal(store: &dyn Store, t0: DateTime<Utc>) {
    let at = |minutes: i64| t0 + Duration::minutes(minutes);
    let decisions = |event_id: &str, minutes: i64| Write::Decisions {
        event_id: event_id.into(),
        at: at(minutes),
        correlation: None,
        decisions: vec![],
    };
    let mut joined = member(10, "t-fp", "t-first", at(0));
    store
        .commit(&[
            Write::Event(event("t-first", "t-fp", Status::Firing, at(0)).into()),
            decisions("t-first", 0),
            Write::Incident(incident(10, "checkout", State::Open, at(0))),
            Write::IncidentMember(joined.clone()),
            timeline(10, TimelineKind::Opened, Some("t-first"), at(0)),
            // Another incident's entries, interleaved.
            Write::Event(event("t-other", "t-other", Status::Firing, at(0)).into()),
            decisions("t-other", 0),
            Write::IncidentMember(member(11, "t-other", "t-other", at(0))),
            timeline(11, TimelineKind::Opened, Some("t-other"), at(0)),
        ])
        .await
        .expect("commit");
    // A decision for an event that is neither the member's first nor its latest stays out.
    store
        .commit(&[
            Write::Event(event("t-middle", "t-fp", Status::Firing, at(1)).into()),
            decisions("t-middle", 1),
        ])
        .await
        .expect("commit");
    joined.last_event_id = "t-last".into();
    store
        .commit(&[
            Write::Event(event("t-last", "t-fp", Status::Firing, at(2)).into()),
            decisions("t-last", 2),
            Write::IncidentMember(joined),
            Write::RunStarted {
                run: run("t-run", "t-last"),
                at: at(2),
            },
            Write::RunIncident {
                run_id: "t-run".into(),
                incident: 10,
            },
            Write::RunStarted {
                run: run("t-run-other", "t-other"),
                at: at(2),
            },
            Write::RunStarted {
                run: run("t-run-none", "t-middle"),
                at: at(2),
            },
            Write::RunRecord {
                run_id: "t-run".into(),
                record: Record::StepStarted {
                    step: "s".into(),
                    name: "s".into(),
                    attempt: 1,
                    action: "exec".into(),
                    inputs: serde_json::json!({}),
                    resumed: false,
                },
                at: at(2),
            },
        ])
        .await
        .expect("commit");
    store
        .commit(&[
            // A run linked in a later commit than the one that started it.
            Write::RunIncident {
                run_id: "t-run-other".into(),
                incident: 11,
            },
            Write::RunFinished {
                run_id: "t-run".into(),
                end: RunEnd {
                    status: RunStatus::Succeeded,
                    error: None,
                    undone: vec![],
                    outputs: serde_json::Value::Null,
                    rejected: None,
                },
                at: at(3),
            },
            Write::Timeline(TimelineEntry {
                incident: 10,
                kind: TimelineKind::Mitigated,
                at: at(3),
                event_id: None,
                summary: "run t-run succeeded".into(),
                detail: serde_json::json!({"run_id": "t-run"}),
            }),
        ])
        .await
        .expect("commit");
    let entries = store.incident_timeline(10).await.expect("read");
    let describe = |entries: &[JournalEntry]| {
        entries
            .iter()
            .map(|entry| {
                let about = entry.event_id.as_deref().or(entry.run_id.as_deref());
                format!("{} {}", entry.entry.kind(), about.unwrap_or("-"))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        describe(&entries),
        vec![
            "decision t-first",
            "opened t-first",
            "decision t-last",
            "run_started t-last",
            "step_started t-run",
            "run_finished t-run",
            "mitigated -",
        ]
    );
    assert!(
        entries.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "in journal order"
    );
    assert_eq!(entries[1].incident_id, Some(10));
    assert_eq!(
        entries[1].entry.body(),
        serde_json::json!({"summary": "opened 10"}),
        "a null detail is left out"
    );
    assert_eq!(
        entries[6].entry.body(),
        serde_json::json!({"summary": "run t-run succeeded", "detail": {"run_id": "t-run"}})
    );
    assert_eq!(entries[3].incident_id, None);
    let other = store.incident_timeline(11).await.expect("read");
    assert_eq!(
        describe(&other),
        vec!["decision t-other", "opened t-other", "run_started t-other"]
    );
    assert!(store.incident_timeline(99).await.expect("read").is_empty());
    // The journal of an event shows the timeline entries it caused.
    assert_eq!(
        describe(&store.journal_for_event("t-first").await.expect("read")),
        vec!["decision t-first", "opened t-first"]
    );
    let run = |id: &'static str| async move {
        store
            .run(id)
            .await
            .expect("read")
            .expect("exists")
            .incident_id
    };
    assert_eq!(run("t-run").await, Some(10));
    assert_eq!(run("t-run-other").await, Some(11));
    assert_eq!(run("t-run-none").await, None);
    let linked = store
        .runs(&RunQuery {
            limit: 10,
            incident: Some(10),
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(
        linked.iter().map(|run| run.id.as_str()).collect::<Vec<_>>(),
        vec!["t-run"]
    );
    assert_eq!(linked[0].status, RunStatus::Succeeded);
}

async fn silences_upsert_and_expire(store: &dyn Store, t0: DateTime<Utc>) {
    let now = t0 + Duration::hours(1);
    let active = silence("s-active", t0, now + Duration::hours(1));
    let ended = silence("s-ended", t0 + Duration::minutes(1), now);
    let older = silence(
        "s-older",
        t0 - Duration::minutes(1),
        now - Duration::minutes(1),
    );
    store
        .commit(&[
            Write::Silence(active.clone()),
            Write::Silence(silence("s-ended", t0, now + Duration::hours(1))),
            Write::Silence(older),
        ])
        .await
        .expect("commit");
    // Expired early: the same id, replaced.
    store
        .commit(&[Write::Silence(Silence {
            expired_by: Some("bob".into()),
            ..ended.clone()
        })])
        .await
        .expect("commit");
    let ids = |silences: Vec<Silence>| {
        silences
            .into_iter()
            .map(|silence| silence.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.silences(false, now).await.expect("read")),
        vec!["s-active"],
        "a silence ending now has expired"
    );
    assert_eq!(
        ids(store.silences(true, now).await.expect("read")),
        vec!["s-ended", "s-active", "s-older"],
        "newest created first"
    );
    assert_eq!(store.silence("s-active").await.expect("read"), Some(active));
    assert_eq!(
        store.silence("s-ended").await.expect("read"),
        Some(Silence {
            expired_by: Some("bob".into()),
            ..ended
        })
    );
    assert!(store.silence("nope").await.expect("read").is_none());
}

/// What a backend's [`Store::backup`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backup {
    /// Writes a copy that opens as a store.
    Copies,
    /// Refuses, saying which tool to use instead (PostgreSQL: `pg_dump`).
    Refuses,
}

/// Retention, exports and backups, against a fresh, empty store; `dir` is a directory for the backup.
pub async fn run_upkeep(store: &dyn Store, dir: &std::path::Path, backup: Backup) {
    use homeostat_core::config::Retention;
    let now = DateTime::UNIX_EPOCH + Duration::days(20_000);
    let ago = |days: i64| now - Duration::days(days);
    let ended = |status: RunStatus| RunEnd {
        status,
        error: None,
        undone: vec![],
        outputs: serde_json::Value::Null,
        rejected: None,
    };
    let step = |step: &str| Record::StepStarted {
        step: step.into(),
        name: step.into(),
        attempt: 1,
        action: "log".into(),
        inputs: serde_json::Value::Null,
        resumed: false,
    };
    let resolved = |mut incident: Incident, at: DateTime<Utc>| {
        incident.state = State::Resolved;
        incident.resolved_at = Some(at);
        incident.updated_at = at;
        incident
    };
    let decision = |event_id: &str, at: DateTime<Utc>| Write::Decisions {
        event_id: event_id.into(),
        at,
        correlation: None,
        decisions: vec![],
    };
    // In time order, as the writer commits: sequence numbers and times grow together.
    let batches: Vec<Vec<Write>> = vec![
        vec![
            Write::RunStarted {
                run: run("r-ancient", ""),
                at: ago(500),
            },
            Write::Incident(incident(2, "cart", State::Open, ago(500))),
            Write::IncidentMember(member(2, "f2", "x", ago(500))),
            timeline(2, TimelineKind::Opened, None, ago(500)),
        ],
        vec![
            Write::RunFinished {
                run_id: "r-ancient".into(),
                end: ended(RunStatus::Succeeded),
                at: ago(450),
            },
            Write::Incident(resolved(
                incident(2, "cart", State::Open, ago(500)),
                ago(450),
            )),
        ],
        vec![
            Write::RunStarted {
                run: run("r-done", ""),
                at: ago(100),
            },
            Write::RunRecord {
                run_id: "r-done".into(),
                record: step("s"),
                at: ago(100),
            },
            Write::Incident(incident(1, "checkout", State::Open, ago(100))),
            timeline(1, TimelineKind::Opened, None, ago(100)),
        ],
        vec![
            Write::RunFinished {
                run_id: "r-done".into(),
                end: ended(RunStatus::Succeeded),
                at: ago(95),
            },
            Write::Incident(resolved(
                incident(1, "checkout", State::Open, ago(100)),
                ago(95),
            )),
            timeline(1, TimelineKind::Resolved, None, ago(95)),
        ],
        vec![
            Write::Event(event("e-old-a", "fa", Status::Firing, ago(40)).into()),
            Write::Event(event("e-old-b", "fb", Status::Firing, ago(40)).into()),
            Write::Event(event("e-old-run", "fc", Status::Firing, ago(40)).into()),
            decision("e-old-a", ago(40)),
            decision("e-old-b", ago(40)),
            Write::RunStarted {
                run: run("r-running", "e-old-run"),
                at: ago(40),
            },
        ],
        vec![
            Write::Event(event("e-new", "fd", Status::Firing, ago(1)).into()),
            decision("e-new", ago(1)),
            Write::Incident(incident(3, "search", State::Open, ago(1))),
            timeline(3, TimelineKind::Opened, Some("e-new"), ago(1)),
        ],
    ];
    for batch in &batches {
        store.commit(batch).await.expect("commit");
    }
    let policy = Retention {
        events_max_age_secs: 30 * 86_400,
        details_max_age_secs: 90 * 86_400,
        summaries_max_age_secs: 400 * 86_400,
        max_bytes: 0,
        interval_secs: 600,
    };

    // A consumer that has not read past the first event keeps the others.
    store
        .commit(&[Write::Cursor {
            name: "laggard".into(),
            seq: 1,
        }])
        .await
        .expect("commit");
    let report = store
        .plan_retention(&policy, now)
        .await
        .expect("plan")
        .report;
    assert_eq!(
        report.events, 1,
        "only the event the consumer read: {report:?}"
    );
    store
        .commit(&[Write::Cursor {
            name: "laggard".into(),
            seq: 4,
        }])
        .await
        .expect("commit");

    let plan = store.plan_retention(&policy, now).await.expect("plan");
    let report = plan.report.clone();
    let expected = crate::RetentionReport {
        dry_run: true,
        // e-old-a and e-old-b; e-old-run triggered a run still in progress.
        events: 2,
        decisions: 2,
        // r-done's three rows and r-ancient's two.
        run_details: 5,
        // incident 1's two timeline rows and incident 2's one.
        incident_details: 3,
        runs: 1,
        incidents: 1,
        by_size: 0,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_before,
    };
    assert_eq!(report, expected, "a dry run counts and keeps everything");
    assert_eq!(store.event_count().await.expect("count"), 4);

    // Exports read ranges by time, oldest first.
    let recent = store
        .export_events(Some(ago(2)), None, 0, 100)
        .await
        .expect("export");
    assert_eq!(
        recent
            .iter()
            .map(|record| record.event.id.as_str())
            .collect::<Vec<_>>(),
        ["e-new"]
    );
    let old = store
        .export_events(None, Some(ago(2)), 0, 100)
        .await
        .expect("export");
    assert_eq!(old.len(), 3);
    let paged = store
        .export_events(None, None, old[0].seq, 2)
        .await
        .expect("export");
    assert_eq!(
        paged
            .iter()
            .map(|record| record.event.id.as_str())
            .collect::<Vec<_>>(),
        ["e-old-b", "e-old-run"]
    );
    let journal = store
        .export_journal(Some(ago(120)), Some(ago(90)), 0, 100)
        .await
        .expect("export");
    assert!(
        !journal.is_empty()
            && journal
                .iter()
                .all(|entry| entry.at >= ago(120) && entry.at < ago(90)),
        "{journal:?}"
    );
    assert!(journal.windows(2).all(|pair| pair[0].seq < pair[1].seq));

    // A backup is a store of its own with the same rows; it never overwrites a file.
    let copy = dir.join("backup.db");
    match backup {
        Backup::Copies => {
            let bytes = store.backup(&copy).await.expect("backup");
            assert!(bytes > 0);
            assert!(matches!(
                store.backup(&copy).await,
                Err(crate::Error::Backup(_))
            ));
        }
        Backup::Refuses => {
            let refused = store.backup(&copy).await;
            assert!(
                matches!(&refused, Err(crate::Error::Backup(message)) if message.contains("pg_dump")),
                "{refused:?}"
            );
            assert!(!copy.exists());
        }
    }

    // Applied, a prune at a time, as the writer does.
    let mut pruned = 0;
    for prune in plan.prunes {
        pruned += store
            .commit(&[Write::Prune(prune)])
            .await
            .expect("prune")
            .pruned;
    }
    // 2 events, 2 decisions, 5 run rows, 3 timeline rows, 1 run, 1 incident and its 1 member.
    assert_eq!(pruned, 15);
    let left: Vec<String> = store
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|record| record.event.id)
        .collect();
    assert_eq!(left, ["e-old-run", "e-new"]);
    assert!(store.run("r-ancient").await.expect("run").is_none());
    let done = store
        .run("r-done")
        .await
        .expect("run")
        .expect("its summary stays");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert!(store
        .journal_for_run("r-done")
        .await
        .expect("journal")
        .is_empty());
    assert!(!store
        .journal_for_run("r-running")
        .await
        .expect("journal")
        .is_empty());
    assert!(store.incident(2).await.expect("incident").is_none());
    assert!(store.incident_members(2).await.expect("members").is_empty());
    assert!(store.incident(1).await.expect("incident").is_some());
    assert!(store
        .incident_timeline(1)
        .await
        .expect("timeline")
        .is_empty());
    assert_eq!(store.incident_timeline(3).await.expect("timeline").len(), 1);
    assert_eq!(store.incidents_max_id().await.expect("max"), 3);
    // Planning again finds nothing more.
    let again = store.plan_retention(&policy, now).await.expect("plan");
    assert!(again.prunes.is_empty(), "{again:?}");
    // New events are numbered after the ones deleted.
    let committed = store
        .commit(&[Write::Event(
            event("e-later", "fe", Status::Firing, now).into(),
        )])
        .await
        .expect("commit");
    assert_eq!(committed.event_seqs, vec![5]);
}

/// Every list reads its next page from a cursor, in the list's order, with nothing skipped or
/// repeated: events and incidents by their numbers, runs by their start and, at the same start,
/// their id. Runs after the other checks, over what they left in the store.
async fn lists_page_by_cursor(store: &dyn Store, t0: DateTime<Utc>) {
    let newest = store
        .events(&EventQuery {
            limit: 2,
            newest_first: true,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(newest.len(), 2, "the other checks committed events");
    let older = store
        .events(&EventQuery {
            limit: 1000,
            newest_first: true,
            before_seq: Some(newest[1].seq),
            ..Default::default()
        })
        .await
        .expect("read");
    let mut seqs: Vec<i64> = newest
        .iter()
        .chain(&older)
        .map(|record| record.seq)
        .collect();
    let all = store.event_count().await.expect("count") as usize;
    assert_eq!(seqs.len(), all, "two pages hold every event once");
    seqs.dedup();
    assert!(seqs.windows(2).all(|pair| pair[0] > pair[1]), "{seqs:?}");

    let incident_ids = |before_id| async move {
        store
            .incidents(&IncidentQuery {
                limit: 1000,
                before_id,
                ..Default::default()
            })
            .await
            .expect("read")
            .into_iter()
            .map(|incident| incident.id)
            .collect::<Vec<_>>()
    };
    let all = incident_ids(None).await;
    assert!(all.len() >= 3, "the other checks made incidents: {all:?}");
    assert_eq!(incident_ids(Some(all[1])).await, all[2..].to_vec());

    let later = t0 + Duration::hours(1);
    let mut writes = Vec::new();
    for (id, at) in [
        ("page-a", later),
        ("page-b", later + Duration::seconds(1)),
        ("page-c", later + Duration::seconds(1)),
        ("page-d", later + Duration::seconds(2)),
    ] {
        writes.push(Write::RunStarted {
            run: run(id, "e1"),
            at,
        });
    }
    store.commit(&writes).await.expect("commit runs");
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .runs(&RunQuery {
                limit: 1,
                started_after: Some(later),
                before: before.clone(),
                ..Default::default()
            })
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        seen.push(last.id.clone());
        before = Some((last.started_at, last.id.clone()));
    }
    assert_eq!(seen, vec!["page-d", "page-c", "page-b", "page-a"]);
}

#[cfg(test)]
mod tests {

    use homeostat_core::config::Synchronous;

    use crate::sqlite::SqliteStore;
    use crate::Store;

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("h.db"), Synchronous::Normal)
            .await
            .expect("open");
        super::run_all(&store).await;
    }

    #[tokio::test]
    async fn sqlite_passes_the_upkeep_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("h.db"), Synchronous::Normal)
            .await
            .expect("open");
        super::run_upkeep(&store, dir.path(), super::Backup::Copies).await;
        let copy = SqliteStore::open(&dir.path().join("backup.db"), Synchronous::Normal)
            .await
            .expect("the backup opens as a store");
        assert_eq!(copy.event_count().await.expect("count"), 4);
    }

    #[tokio::test]
    async fn the_wal_is_truncated_when_the_store_goes_quiet_and_on_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let wal = dir.path().join("h.db-wal");
        let store = SqliteStore::open(&path, Synchronous::Normal)
            .await
            .expect("open");
        let t0 = chrono::DateTime::UNIX_EPOCH;
        for index in 0..300 {
            store
                .commit(&[super::Write::Event(
                    super::event(&format!("e{index}"), "f", super::Status::Firing, t0).into(),
                )])
                .await
                .expect("commit");
        }
        let size = || std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
        assert!(size() > 0, "commits went to the WAL");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the WAL was not truncated while the store was idle: {} bytes",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        store
            .commit(&[super::Write::Event(
                super::event("last", "f", super::Status::Firing, t0).into(),
            )])
            .await
            .expect("commit");
        assert!(size() > 0);
        store.close().await;
        assert_eq!(size(), 0, "a clean stop leaves an empty WAL");
    }

    /// A new database gives deleted pages back to the file system: retention's `max_bytes` bounds
    /// the file, not only the rows in it. (A pragma set after WAL mode had written the header used
    /// to be ignored, and the file only grew.)
    #[tokio::test]
    async fn a_new_database_shrinks_when_retention_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, Synchronous::Normal)
            .await
            .expect("open");
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let padding = "x".repeat(2_000);
        for chunk in 0..20 {
            let writes: Vec<super::Write> = (0..100)
                .map(|index| {
                    let mut event =
                        super::event(&format!("e{chunk}-{index}"), "f", super::Status::Firing, t0);
                    event.annotations.insert("padding".into(), padding.clone());
                    super::Write::Event(event.into())
                })
                .collect();
            store.commit(&writes).await.expect("commit");
        }
        let quiet_size = || async {
            // The database file changes at a checkpoint, which an idle store runs by itself.
            let wal = dir.path().join("h.db-wal");
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0) > 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the WAL was not checkpointed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            std::fs::metadata(&path).expect("the database").len()
        };
        let full = quiet_size().await;
        assert!(full > 4_000_000, "2,000 events of 2 KB: {full} bytes");
        // Each prune's commit gives back at most `VACUUM_PAGES`; a few commits give back all.
        store
            .commit(&[super::Write::Prune(
                homeostat_core::journal::Prune::Events {
                    from: 1,
                    below: 2_001,
                },
            )])
            .await
            .expect("prune");
        for _ in 0..4 {
            store
                .commit(&[super::Write::Prune(
                    homeostat_core::journal::Prune::Events {
                        from: 1,
                        below: 2_001,
                    },
                )])
                .await
                .expect("prune nothing, vacuum more");
        }
        let emptied = quiet_size().await;
        assert!(
            emptied < full / 4,
            "the file went from {full} to {emptied} bytes"
        );
    }

    #[tokio::test]
    async fn sqlite_reopens_with_data_and_sequence_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let t0 = chrono::DateTime::UNIX_EPOCH;
        {
            let store = SqliteStore::open(&path, Synchronous::Full)
                .await
                .expect("open");
            store
                .commit(&[super::Write::Event(
                    super::event("a", "f", super::Status::Firing, t0).into(),
                )])
                .await
                .expect("commit");
        }
        let store = SqliteStore::open(&path, Synchronous::Full)
            .await
            .expect("reopen");
        let committed = store
            .commit(&[super::Write::Event(
                super::event("b", "f", super::Status::Firing, t0).into(),
            )])
            .await;
        assert_eq!(committed.expect("commit").event_seqs, vec![2]);
    }
}

/// The same suites against a real PostgreSQL server, one per test, from the Debian package.
#[cfg(all(test, feature = "postgres"))]
mod postgres_tests {
    use crate::postgres::testing::Server;
    use crate::postgres::PostgresStore;
    use crate::{Error, Store};

    #[tokio::test]
    async fn postgres_passes_the_conformance_suite() {
        let Some(server) = Server::start() else {
            return;
        };
        let store = PostgresStore::open(&server.database("conformance").await)
            .await
            .expect("open");
        store.lock_exclusive().await.expect("lock");
        super::run_all(&store).await;
    }

    #[tokio::test]
    async fn postgres_passes_the_upkeep_suite() {
        let Some(server) = Server::start() else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PostgresStore::open(&server.database("upkeep").await)
            .await
            .expect("open");
        super::run_upkeep(&store, dir.path(), super::Backup::Refuses).await;
    }

    #[tokio::test]
    async fn postgres_reopens_with_data_and_sequence_intact_and_one_daemon_holds_it() {
        let Some(server) = Server::start() else {
            return;
        };
        let url = server.database("reopen").await;
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let first = PostgresStore::open(&url).await.expect("open");
        first
            .lock_exclusive()
            .await
            .expect("the first daemon takes the lock");
        first
            .commit(&[super::Write::Event(
                super::event("a", "f", super::Status::Firing, t0).into(),
            )])
            .await
            .expect("commit");
        // A second daemon on the same database is refused while the first runs; tools still read.
        let second = PostgresStore::open(&url).await.expect("open a second time");
        let refused = second.lock_exclusive().await;
        assert!(
            matches!(&refused, Err(Error::Locked(message)) if message.contains("127.0.0.1")),
            "{refused:?}"
        );
        assert!(
            !format!("{refused:?}").contains(&server.url("reopen")[..20]),
            "no password in the message"
        );
        assert_eq!(second.event_count().await.expect("read beside it"), 1);
        first.close().await;
        drop(first);
        // The lock went with the first daemon's session; the second counts on from its rows.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while second.lock_exclusive().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lock was not released"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let committed = second
            .commit(&[super::Write::Event(
                super::event("b", "f", super::Status::Firing, t0).into(),
            )])
            .await;
        assert_eq!(committed.expect("commit").event_seqs, vec![2]);
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_clear_error_that_does_not_print_it() {
        let Some(server) = Server::start() else {
            return;
        };
        let url = server.database("auth").await;
        let wrong = url.replace("homeostat-test-", "not-the-password-");
        let error = match PostgresStore::open(&wrong).await {
            Ok(_) => panic!("a wrong password connects"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("password authentication failed"), "{error}");
        assert!(
            error.contains(&format!("127.0.0.1:{}/auth", server.port())),
            "{error}"
        );
        assert!(!error.contains("not-the-password"), "{error}");
        let garbage = match PostgresStore::open("postgres://user:secret@host:notaport/db").await {
            Ok(_) => panic!("a url with a bad port parses"),
            Err(error) => error.to_string(),
        };
        assert!(!garbage.contains("secret"), "{garbage}");
    }

    #[tokio::test]
    async fn a_writer_whose_session_ends_reconnects_takes_the_lock_again_and_counts_on() {
        let Some(server) = Server::start() else {
            return;
        };
        let url = server.database("reconnect").await;
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let event =
            |id: &str| super::Write::Event(super::event(id, "f", super::Status::Firing, t0).into());
        let store = PostgresStore::open(&url).await.expect("open");
        store.lock_exclusive().await.expect("lock");
        store.commit(&[event("a")]).await.expect("commit");
        // The server ends the writer's session (an administrator, a failover, a restart).
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("connect");
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
        assert_eq!(ended, vec![true], "the writer's session held the lock");
        // The commit on the dead connection fails and acknowledges nothing; the next one runs on
        // a new connection, under the lock again, numbered on from the stored rows.
        let mut committed = store.commit(&[event("b")]).await;
        if committed.is_err() {
            committed = store.commit(&[event("b")]).await;
        }
        assert_eq!(
            committed.expect("commit after reconnecting").event_seqs,
            vec![2]
        );
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
        )
        .fetch_one(&mut admin)
        .await
        .expect("locks");
        assert_eq!(held, 1, "the new connection holds the lock");
    }
}
