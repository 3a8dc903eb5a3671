//! The pipeline in process: decisions and guard verdicts are journaled, failures are recorded, dry
//! runs execute nothing, and a restart resumes what a crash interrupted.

use std::sync::Arc;
use std::time::Duration;

use homeostat_core::clock::SystemClock;
use homeostat_core::config::{Runbook, Step};
use homeostat_core::decide::PlannedRun;
use homeostat_core::runbook::{Input, Record};
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{steps_from_journal, RunQuery, RunStatus, Store, Write};
use serde_json::Value;

use crate::api::{alertmanager_payload, compile, post, Api, INGEST};

/// Polls `check` until it gives `Some`, or fails after five seconds.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn runs(store: &dyn Store) -> Vec<homeostat_store::RunRecord> {
    store
        .runs(&RunQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("runs")
}

async fn finished_runs(store: &Arc<dyn Store>, count: usize) -> Vec<homeostat_store::RunRecord> {
    eventually("runs to finish", || async {
        let runs = runs(&**store).await;
        (runs.len() >= count && runs.iter().all(|run| run.status != RunStatus::Running))
            .then_some(runs)
    })
    .await
}

fn alert(name: &str, status: &str, instance: &str, starts_at: &str) -> Value {
    serde_json::json!({"status": status, "labels": {"alertname": name, "instance": instance}, "annotations": {},
        "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""})
}

fn payload(alerts: Vec<Value>) -> String {
    serde_json::json!({"version": "4", "status": "firing", "receiver": "r", "groupKey": "k", "alerts": alerts}).to_string()
}

async fn decisions_for(store: &dyn Store, event_id: &str) -> Vec<Value> {
    store
        .journal_for_event(event_id)
        .await
        .expect("journal")
        .into_iter()
        .filter(|entry| entry.kind() == "decision")
        .flat_map(|entry| {
            entry.body()["decisions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn guards_verdicts_and_resolves_are_journaled() {
    let marker = tempfile::tempdir().expect("tempdir");
    let log = marker.path().join("restarts.log");
    let rules = format!(
        r#"rules:
  - name: restart
    match: ['alertname="Down"']
    target: "{{{{ labels.instance }}}}"
    guards: {{cooldown_secs: 600, max_runs: {{count: 2, window_secs: 600}}}}
    steps:
      - name: restart
        action: exec
        with: {{command: ["/bin/sh", "-c", "echo {{{{ labels.instance }}}} >> {log}"]}}
"#,
        log = log.display()
    );
    let api = Api::start(&rules).await;
    let store = api.handle.store().clone();
    let send = |alerts: Vec<Value>| {
        let api = &api;
        async move {
            let (status, _, body) = api
                .call(post(
                    "/api/v1/hooks/alertmanager",
                    Some(INGEST),
                    payload(alerts),
                ))
                .await;
            assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        }
    };
    send(vec![alert("Down", "firing", "a", "2026-11-24T10:00:00Z")]).await;
    finished_runs(&store, 1).await;
    // Alertmanager repeats a firing alert with the same start: folded, not decided again.
    send(vec![alert("Down", "firing", "a", "2026-11-24T10:00:00Z")]).await;
    // The same target firing anew (a new start) is held back by the cooldown.
    send(vec![alert("Down", "firing", "a", "2026-11-24T10:05:00Z")]).await;
    send(vec![alert("Down", "firing", "b", "2026-11-24T10:00:00Z")]).await;
    // A third target exceeds max_runs.
    send(vec![alert("Down", "firing", "c", "2026-11-24T10:00:00Z")]).await;
    send(vec![alert("Down", "resolved", "a", "2026-11-24T10:05:00Z")]).await;
    let runs = finished_runs(&store, 2).await;
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|run| run.status == RunStatus::Succeeded),
        "{runs:?}"
    );

    let events = eventually("all events decided", || async {
        let events = store
            .events(&homeostat_store::EventQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("events");
        let cursor = store.cursor("decide").await.expect("cursor");
        // Without the commands homeostat adds itself (a run that succeeded mitigates its incident).
        let events: Vec<_> = events
            .into_iter()
            .filter(|record| record.event.kind != homeostat_core::EventKind::Command)
            .collect();
        let last = events.last().map_or(0, |record| record.seq);
        (events.len() == 6 && cursor >= last).then_some(events)
    })
    .await;
    let mut verdicts = Vec::new();
    for record in &events {
        let decisions = decisions_for(&*store, &record.event.id).await;
        verdicts.push(
            decisions
                .first()
                .map(|d| d["verdict"].as_str().unwrap_or("").to_string())
                .unwrap_or("-".into()),
        );
    }
    assert_eq!(
        verdicts,
        vec!["run", "-", "skipped", "run", "skipped", "ignored_status"]
    );
    let skipped_cooldown = decisions_for(&*store, &events[2].event.id).await;
    assert_eq!(skipped_cooldown[0]["skip"]["guard"], "cooldown");
    assert!(skipped_cooldown[0]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("skipped: cooldown for `a` until"));
    let skipped_rate = decisions_for(&*store, &events[4].event.id).await;
    assert_eq!(skipped_rate[0]["skip"]["guard"], "rate_limited");
    let lines = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        vec!["a", "b"],
        "each target was acted on once"
    );
    let metrics = api.handle.metrics().render();
    assert!(
        metrics.contains(
            "homeostat_guard_verdicts_total{rule=\"restart\",verdict=\"skipped_cooldown\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("homeostat_events_duplicate_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("homeostat_actions_total{action=\"exec\",outcome=\"succeeded\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_step_fails_the_run_and_stops_it() {
    let rules = r#"rules:
  - name: broken
    match: ['alertname="X"']
    steps:
      - {name: fail, action: exec, with: {command: ["/bin/sh", "-c", "echo oops >&2; exit 3"]}}
      - {name: never, action: exec, with: {command: ["true"]}}
  - name: slow
    match: ['alertname="Y"']
    steps:
      - {name: sleep, action: exec, with: {command: ["sleep", "10"]}, timeout_secs: 0.2}
  - name: unreachable
    match: ['alertname="Z"']
    steps:
      - {name: call, action: http_request, with: {url: "http://127.0.0.1:9/nothing"}, timeout_secs: 2}
"#;
    let api = Api::start(rules).await;
    let store = api.handle.store().clone();
    for name in ["X", "Y", "Z"] {
        api.call(post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            alertmanager_payload(&[(name, "firing")]),
        ))
        .await;
    }
    let runs = finished_runs(&store, 3).await;
    let mut outcomes = Vec::new();
    for run in &runs {
        let steps = steps_from_journal(&store.journal_for_run(&run.id).await.expect("journal"));
        outcomes.push((
            run.rule.clone(),
            run.status,
            steps
                .iter()
                .map(|s| s.status.to_string())
                .collect::<Vec<_>>(),
            run.error.clone().unwrap_or_default(),
        ));
    }
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(outcomes[0].0, "broken");
    assert_eq!(
        (outcomes[0].1, outcomes[0].2.clone()),
        (RunStatus::Failed, vec!["failed".to_string()]),
        "the second step never ran"
    );
    assert!(
        outcomes[0].3.contains("exited with status 3") && outcomes[0].3.contains("oops"),
        "{}",
        outcomes[0].3
    );
    assert_eq!(
        (outcomes[1].0.as_str(), outcomes[1].2.clone()),
        ("slow", vec!["timed_out".to_string()])
    );
    assert_eq!(
        (outcomes[2].0.as_str(), outcomes[2].2.clone()),
        ("unreachable", vec!["failed".to_string()])
    );
    assert!(
        outcomes[2].3.contains("connection refused"),
        "{}",
        outcomes[2].3
    );
}

#[tokio::test]
async fn global_dry_run_records_rendered_steps_and_executes_nothing() {
    let marker = tempfile::tempdir().expect("tempdir");
    let touched = marker.path().join("touched");
    let rules = format!(
        "dry_run: true\nrules:\n  - name: touch\n    match: ['alertname=\"X\"']\n    steps:\n      - {{name: touch, action: exec, with: {{command: [touch, {path:?}]}}}}\n",
        path = touched.display().to_string()
    );
    let api = Api::start(&rules).await;
    let store = api.handle.store().clone();
    api.call(post(
        "/api/v1/hooks/alertmanager",
        Some(INGEST),
        alertmanager_payload(&[("X", "firing")]),
    ))
    .await;
    let runs = finished_runs(&store, 1).await;
    assert_eq!(runs[0].status, RunStatus::DryRun);
    let steps = steps_from_journal(&store.journal_for_run(&runs[0].id).await.expect("journal"));
    assert_eq!(steps[0].status, "dry_run");
    assert_eq!(
        steps[0].inputs.as_ref().expect("rendered inputs")["command"][1],
        touched.display().to_string()
    );
    assert!(!touched.exists(), "a dry run executes nothing");
}

fn exec_step(name: &str, command: &[&str], idempotent: bool) -> Step {
    let mut step = Step::action(name, "exec", serde_json::json!({ "command": command }));
    step.idempotent = idempotent;
    step
}

#[tokio::test]
async fn restart_resumes_idempotent_steps_and_stops_unknown_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let compiled = compile(dir.path(), "");
    let log = dir.path().join("effects.log");
    let append = |word: &str| format!("echo {word} >> {}", log.display());
    let t0 = chrono::DateTime::UNIX_EPOCH;
    let planned = |id: &str, steps: Vec<Step>| PlannedRun {
        id: id.into(),
        rule: "r".into(),
        runbook: "rule:r".into(),
        target: id.into(),
        event_id: String::new(),
        started_by: None,
        dry_run: false,
        incident: None,
        params: Default::default(),
        spec: Runbook {
            name: "rule:r".into(),
            description: None,
            params: Default::default(),
            steps,
            outputs: Default::default(),
        },
        library: Default::default(),
    };
    // Two runs as a crash left them: each has a step that started and has no outcome.
    {
        let store = SqliteStore::open(
            &dir.path().join("h.db"),
            homeostat_core::config::Synchronous::Normal,
        )
        .await
        .expect("open");
        let safe = planned(
            "safe",
            vec![
                exec_step("first", &["/bin/sh", "-c", &append("safe-first")], false),
                exec_step("again", &["/bin/sh", "-c", &append("safe-again")], true),
            ],
        );
        let risky = planned(
            "risky",
            vec![exec_step(
                "charge",
                &["/bin/sh", "-c", &append("risky-charge")],
                false,
            )],
        );
        let start = |run_id: &str, name: &str| Write::RunRecord {
            run_id: run_id.into(),
            record: Record::StepStarted {
                step: name.into(),
                name: name.into(),
                attempt: 1,
                action: "exec".into(),
                inputs: Value::Null,
                resumed: false,
            },
            at: t0,
        };
        store
            .commit(&[
                Write::RunStarted { run: safe, at: t0 },
                start("safe", "first"),
                Write::RunInput {
                    run_id: "safe".into(),
                    input: Input::Outcome {
                        step: "first".into(),
                        attempt: 1,
                        status: homeostat_core::journal::OutcomeStatus::Succeeded,
                        output: Value::Null,
                        error: None,
                    },
                    outputs: None,
                    at: t0,
                },
                start("safe", "again"),
                Write::RunStarted { run: risky, at: t0 },
                start("risky", "charge"),
            ])
            .await
            .expect("commit");
    }
    let engine = homeostat_engine::start(compiled, Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let store = engine.handle.store().clone();
    let runs = finished_runs(&store, 2).await;
    let status = |id: &str| runs.iter().find(|run| run.id == id).map(|run| run.status);
    assert_eq!(status("safe"), Some(RunStatus::Succeeded));
    assert_eq!(status("risky"), Some(RunStatus::NeedsAttention));
    let effects = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        effects.lines().collect::<Vec<_>>(),
        vec!["safe-again"],
        "only the idempotent step ran again"
    );
    let safe_steps = steps_from_journal(&store.journal_for_run("safe").await.expect("journal"));
    assert_eq!(
        safe_steps
            .last()
            .map(|s| (s.attempt, s.status.as_str(), s.resumed)),
        Some((1, "succeeded", true)),
        "the same attempt, with the same idempotency key, ran again"
    );
    let risky = runs.iter().find(|run| run.id == "risky").expect("risky");
    assert!(
        risky
            .error
            .as_deref()
            .unwrap_or("")
            .contains("not marked `idempotent: true`"),
        "{risky:?}"
    );
    engine.abort();
}

#[tokio::test]
async fn events_committed_but_not_decided_are_decided_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = "rules:\n  - name: r\n    match: ['alertname=\"X\"']\n    guards: {dry_run: true, lock: false}\n    steps:\n      - {name: s, action: exec, with: {command: [\"true\"]}}\n";
    let compiled = compile(dir.path(), rules);
    {
        // As if the daemon acknowledged these and died before deciding.
        let store = SqliteStore::open(
            &dir.path().join("h.db"),
            homeostat_core::config::Synchronous::Normal,
        )
        .await
        .expect("open");
        let now = chrono::DateTime::UNIX_EPOCH;
        let events = homeostat_core::ingest::alertmanager::parse(
            alertmanager_payload(&[("X", "firing"), ("Y", "firing"), ("X", "resolved")]).as_bytes(),
            "alertmanager",
            now,
        )
        .expect("parse");
        store
            .commit(
                &events
                    .into_iter()
                    .map(|event| Write::Event(event.into()))
                    .collect::<Vec<_>>(),
            )
            .await
            .expect("commit");
    }
    let engine = homeostat_engine::start(compiled, Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let store = engine.handle.store().clone();
    eventually("the backlog to be decided", || async {
        (store.cursor("decide").await.ok()? == 3).then_some(())
    })
    .await;
    let runs = finished_runs(&store, 1).await;
    assert_eq!(runs.len(), 1, "one firing X, decided once");
    engine.abort();
}

/// Starts an engine on `dir`'s database, sends one Alertmanager payload, waits until it is decided.
async fn start_and_send(
    dir: &std::path::Path,
    rules: &str,
    body: String,
) -> homeostat_engine::Engine {
    let engine = homeostat_engine::start(compile(dir, rules), Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let events = homeostat_core::ingest::alertmanager::parse(
        body.as_bytes(),
        "alertmanager",
        engine.handle.clock().now(),
    )
    .expect("parse");
    let (pending, _) = engine
        .handle
        .ingest("alertmanager", events)
        .expect("queued");
    let seq = *pending
        .committed()
        .await
        .expect("committed")
        .event_seqs
        .last()
        .expect("one event");
    let store = engine.handle.store().clone();
    eventually("the event to be decided", || async {
        (store.cursor("decide").await.ok()? >= seq).then_some(())
    })
    .await;
    engine
}

#[tokio::test]
async fn repeats_are_recognized_across_restarts_from_replay_and_from_snapshots() {
    let rules = "rules:\n  - name: r\n    match: ['alertname=\"Down\"']\n    guards: {lock: false}\n    steps:\n      - {name: s, action: exec, with: {command: [\"true\"]}}\n";
    let firing = |instance: &str| {
        payload(vec![alert(
            "Down",
            "firing",
            instance,
            "2026-11-24T10:00:00Z",
        )])
    };
    let dir = tempfile::tempdir().expect("tempdir");
    start_and_send(dir.path(), rules, firing("a")).await.abort();
    // No snapshot yet: the restart replays the journal up to the cursor and knows `a` is firing.
    let engine = start_and_send(dir.path(), rules, firing("a")).await;
    assert!(engine
        .handle
        .metrics()
        .render()
        .contains("homeostat_events_duplicate_total 1"));
    let store = engine.handle.store().clone();
    // Now a snapshot says `b` is firing and nothing is left to replay after it.
    let b = homeostat_core::ingest::alertmanager::parse(
        firing("b").as_bytes(),
        "am",
        chrono::DateTime::UNIX_EPOCH,
    )
    .expect("parse")
    .remove(0);
    // The correlator's state with only `b` firing (as incident 2: 1 is `a`'s).
    let mut state = homeostat_core::incident::correlate::Correlator::new(
        Arc::clone(&compile(dir.path(), rules).incidents),
        1,
    );
    state.observe(&b);
    let cursor = store.cursor("decide").await.expect("cursor");
    store
        .commit(&[Write::Snapshot {
            name: "decide".into(),
            seq: cursor,
            body: state.snapshot(),
        }])
        .await
        .expect("commit");
    engine.abort();
    drop(engine);
    let engine = start_and_send(dir.path(), rules, firing("b")).await;
    assert!(
        engine
            .handle
            .metrics()
            .render()
            .contains("homeostat_events_duplicate_total 1"),
        "b is known from the snapshot"
    );
    assert_eq!(
        runs(&**engine.handle.store()).await.len(),
        1,
        "only the first `a` ran"
    );
    engine.abort();
}

#[tokio::test]
async fn a_probe_firing_before_a_restart_resolves_after_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let healthy = Arc::new(AtomicBool::new(false));
    let router = {
        let healthy = healthy.clone();
        axum::Router::new().route(
            "/healthz",
            axum::routing::get(move || {
                let healthy = healthy.load(Ordering::SeqCst);
                async move {
                    if healthy {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "store: {{path: {db:?}}}\nsources:\n  - {{type: http_probe, name: web, url: \"http://{address}/healthz\", interval_secs: 0.05, timeout_secs: 1}}\n",
        db = dir.path().join("h.db").display().to_string()
    );
    let compile = |text: &str| {
        let parsed =
            homeostat_core::config::parse(&[(dir.path().join("c.yaml"), text.to_string())])
                .expect("valid");
        homeostat_core::rule::compile(&parsed).expect("compiles")
    };
    let statuses = |store: Arc<dyn Store>| async move {
        let query = homeostat_store::EventQuery {
            limit: 100,
            ..Default::default()
        };
        store
            .events(&query)
            .await
            .expect("events")
            .into_iter()
            .map(|record| record.event.status)
            .collect::<Vec<_>>()
    };
    let engine = homeostat_engine::start(compile(&config), Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let store = engine.handle.store().clone();
    eventually("the probe to fire", || {
        let store = store.clone();
        async move { (statuses(store).await == vec![homeostat_core::Status::Firing]).then_some(()) }
    })
    .await;
    engine.abort();
    drop(engine);

    healthy.store(true, Ordering::SeqCst);
    let engine = homeostat_engine::start(compile(&config), Arc::new(SystemClock::default()))
        .await
        .expect("starts");
    let store = engine.handle.store().clone();
    eventually("the probe to resolve after the restart", || {
        let store = store.clone();
        async move {
            let seen = statuses(store).await;
            (seen
                == vec![
                    homeostat_core::Status::Firing,
                    homeostat_core::Status::Resolved,
                ])
            .then_some(())
        }
    })
    .await;
    let last = store
        .last_event("web")
        .await
        .expect("read")
        .expect("an event");
    assert!(
        last.event.starts_at.is_some(),
        "the resolve carries when the episode started"
    );
    engine.abort();
}
