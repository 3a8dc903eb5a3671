//! The pipeline on a PostgreSQL store, chosen by `store: {url: {file: ...}}` as a deployment
//! would: an alert opens an incident, its run is journaled on the incident's timeline, and a
//! restart on the same database knows what the first engine did. The crash test runs on
//! PostgreSQL too (`runbook_crash.rs`).

use std::time::Duration;

use axum::http::StatusCode;
use homeostat_store::{IncidentQuery, RunQuery, RunStatus, Store};

use crate::api::{alertmanager_payload, compile_with_store, get, post, Api, INGEST, READ};
use crate::support::postgres_store;

async fn finished_runs(store: &dyn Store) -> Vec<homeostat_store::RunRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let runs = store
            .runs(&RunQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("runs");
        if !runs.is_empty() && runs.iter().all(|run| run.status != RunStatus::Running) {
            return runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not finish: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_alert_opens_an_incident_whose_run_is_journaled_and_a_restart_knows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_server, store)) = postgres_store(dir.path(), "pipeline").await else {
        return;
    };
    let rules = "rules:\n  - name: restart\n    match: ['alertname=\"Down\"']\n    steps:\n      - {name: say, action: log, with: {message: \"restarting {{ labels.instance }}\"}}\n";
    let compiled = compile_with_store(dir.path(), rules, &store);
    // The config's files stay in `dir` across the restart; each engine gets a directory of its own.
    let api = Api::start_compiled(tempfile::tempdir().expect("tempdir"), compiled).await;
    let firing = alertmanager_payload(&[("Down", "firing")]);
    let (status, _, body) = api
        .call(post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            firing.clone(),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let store = api.handle.store().clone();
    let runs = finished_runs(store.as_ref()).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0]);
    let incident = runs[0].incident_id.expect("the run acts on the incident");
    let opened = store
        .incidents(&IncidentQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("incidents");
    assert_eq!(
        opened
            .iter()
            .map(|incident| incident.id)
            .collect::<Vec<_>>(),
        vec![incident]
    );
    let timeline = store.incident_timeline(incident).await.expect("timeline");
    let kinds: Vec<&str> = timeline.iter().map(|entry| entry.kind()).collect();
    for kind in ["decision", "run_started", "step_started", "run_finished"] {
        assert!(kinds.contains(&kind), "no `{kind}` in {kinds:?}");
    }
    assert!(
        timeline.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "journal order"
    );
    // The API reads the same store.
    let (status, _, listed) = api.call(get("/api/v1/incidents", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(listed.to_string().contains("\"Down\""), "{listed}");

    // A restart on the same database: the repeat is recognized and nothing runs again.
    api.engine.shutdown().await;
    drop(api);
    let compiled = compile_with_store(dir.path(), rules, &store_section(&dir));
    let api = Api::start_compiled(tempfile::tempdir().expect("tempdir"), compiled).await;
    let (status, _, body) = api
        .call(post("/api/v1/hooks/alertmanager", Some(INGEST), firing))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let store = api.handle.store().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !api
        .handle
        .metrics()
        .render()
        .contains("homeostat_events_duplicate_total 1")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the repeat was not recognized after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        finished_runs(store.as_ref()).await.len(),
        1,
        "nothing ran again"
    );
    // The alert twice, and the command the finished run made (mitigate): numbered with no gap.
    let seqs: Vec<i64> = store
        .events(&homeostat_store::EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|record| record.seq)
        .collect();
    assert!(seqs.len() >= 2, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gaps");
    api.engine.shutdown().await;
}

/// The `store:` section [`postgres_store`] wrote for the database `pipeline` in `dir`.
fn store_section(dir: &tempfile::TempDir) -> String {
    format!(
        "{{url: {{file: {:?}}}}}",
        dir.path().join("pipeline.url").display().to_string()
    )
}
