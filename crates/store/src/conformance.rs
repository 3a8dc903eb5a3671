//! The conformance suite every [`Store`] backend must pass: the same assertions against SQLite in every
//! `cargo test`, and against PostgreSQL when that backend is built.

use chrono::{DateTime, Duration, Utc};
use homeostat_core::decide::PlannedRun;
use homeostat_core::event::{EventKind, Status};
use homeostat_core::Event;

use homeostat_core::runbook::{Input, Record, RunEnd};

use crate::{steps_from_journal, EventQuery, RunQuery, RunStatus, Store, Write};

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

/// Runs every check against a fresh, empty store. Panics with a message on the first failure.
pub async fn run_all(store: &dyn Store) {
    let t0 = DateTime::UNIX_EPOCH + Duration::days(20_000);
    events_get_consecutive_sequence_numbers(store, t0).await;
    snapshots_and_latest_events_per_source(store, t0).await;
    runs_and_steps_round_trip(store, t0).await;
    cursors_persist(store).await;
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
    assert_eq!(unfinished[0].status, "running");
    store
        .commit(&[
            Write::RunInput {
                run_id: "run1".into(),
                input: Input::Outcome {
                    step: "s".into(),
                    attempt: 1,
                    status: "succeeded".into(),
                    output: serde_json::json!({"exit_code": 0}),
                    error: None,
                },
                outputs: Some(serde_json::json!({"code": "0"})),
                at: later,
            },
            Write::RunFinished {
                run_id: "run1".into(),
                end: RunEnd {
                    status: "succeeded".into(),
                    error: None,
                    undone: vec![],
                    outputs: serde_json::Value::Null,
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
    assert_eq!(steps[0].status, "succeeded");
    assert_eq!(steps[0].output, Some(serde_json::json!({"exit_code": 0})));
    assert_eq!(steps[0].outputs, Some(serde_json::json!({"code": "0"})));
    assert_eq!(
        steps[0].inputs,
        Some(serde_json::json!({"command": ["true"]}))
    );
    let inputs = store.journal_for_run("run1").await.expect("read");
    let replayed: Vec<Input> = inputs
        .iter()
        .filter(|entry| entry.kind == "step_finished")
        .map(|entry| serde_json::from_value(entry.body.clone()).expect("an input"))
        .collect();
    assert!(matches!(&replayed[..], [Input::Outcome { attempt: 1, .. }]));
    let for_event = store.journal_for_event("e1").await.expect("read");
    assert_eq!(
        for_event
            .iter()
            .map(|entry| entry.kind.as_str())
            .collect::<Vec<_>>(),
        vec!["decision", "run_started"]
    );
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use homeostat_core::config::Synchronous;

    use crate::sqlite::SqliteStore;
    use crate::writer::Writer;
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

    #[tokio::test]
    async fn writer_groups_concurrent_commits_and_stages_writes_into_them() {
        /// Records the events it is shown and moves a cursor with them.
        struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        #[async_trait::async_trait]
        impl crate::writer::Stage for Recorder {
            fn before_commit(
                &mut self,
                events: &[&homeostat_core::Event],
                writes: &mut Vec<super::Write>,
            ) {
                self.0
                    .lock()
                    .expect("lock")
                    .extend(events.iter().map(|event| event.id.clone()));
                writes.push(super::Write::CursorAtLastEvent {
                    name: "recorder".into(),
                });
            }
            async fn after_commit(
                &mut self,
                _: std::result::Result<&crate::Committed, &crate::Error>,
                _: std::time::Duration,
            ) {
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("h.db"), Synchronous::Normal)
                .await
                .expect("open"),
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (writer, _task) =
            Writer::spawn(store.clone(), 1024, 4096, Box::new(Recorder(seen.clone())));
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let mut pending = Vec::new();
        for index in 0..200 {
            let event = super::event(&format!("e{index}"), "f", super::Status::Firing, t0);
            pending.push(
                writer
                    .try_submit(vec![super::Write::Event(event.into())])
                    .expect("queue has room"),
            );
        }
        let mut seqs = Vec::new();
        for one in pending {
            seqs.extend(one.committed().await.expect("committed").event_seqs);
        }
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
        let expected: Vec<String> = (0..200).map(|index| format!("e{index}")).collect();
        assert_eq!(
            *seen.lock().expect("lock"),
            expected,
            "the stage sees every event once, in commit order"
        );
        assert_eq!(
            store.cursor("recorder").await.expect("cursor"),
            200,
            "staged writes commit with the events"
        );
        // A commit without events leaves a last-event cursor where it was.
        writer
            .submit(vec![super::Write::Cursor {
                name: "other".into(),
                seq: 5,
            }])
            .await
            .expect("commit");
        assert_eq!(store.cursor("recorder").await.expect("cursor"), 200);
    }

    #[tokio::test]
    async fn writer_refuses_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("h.db"), Synchronous::Normal)
                .await
                .expect("open"),
        );
        // A current-thread runtime does not run the writer task until this test yields, so the queue fills.
        let (writer, _task) = Writer::spawn(store, 2, 10, Box::new(crate::writer::NoStage));
        let t0 = chrono::DateTime::UNIX_EPOCH;
        let make = |id: &str| {
            vec![super::Write::Event(
                super::event(id, "f", super::Status::Firing, t0).into(),
            )]
        };
        let first = writer.try_submit(make("a")).expect("room");
        let second = writer.try_submit(make("b")).expect("room");
        assert!(matches!(
            writer.try_submit(make("c")),
            Err(crate::Error::Overloaded)
        ));
        first.committed().await.expect("commit");
        second.committed().await.expect("commit");
    }
}
