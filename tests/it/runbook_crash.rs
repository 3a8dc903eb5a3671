//! Durable runs under SIGKILL: the daemon kills itself at each named failure point between a commit
//! and an effect (`homeostat_engine::failpoint`), is restarted on the same database, and every run
//! must finish, each non-idempotent step's effect must have happened at most once, and the runs that
//! could not know must stop in `needs_attention`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{base_config, wait_for, Daemon};

/// Runs started before each crash; with the failure point armed at its `NTH` hit, some are caught
/// mid-way and some not yet started.
const RUNS: usize = 4;
const NTH: u32 = 3;

/// The crash test's rules on `base` (a config's server, store and token sections).
fn config(dir: &std::path::Path, base: String) -> String {
    let effects = dir.join("effects.log").display().to_string();
    // Each step appends `RUN STEP` to one file: the file is the ground truth of what happened.
    let append = |step: &str| {
        format!("[\"/bin/sh\", \"-c\", \"echo {{{{ params.tag }}}} {step} >> {effects}\"]")
    };
    format!(
        "{base}\
runbooks:
  - name: chain
    params:
      tag: {{type: string, required: true}}
    steps:
      - {{name: charge, action: exec, with: {{command: {charge}}}}}
      - {{name: sync, action: exec, with: {{command: {sync}}}, idempotent: true}}
      - {{name: pause, wait: {{duration_secs: 0.05}}}}
      - {{name: ship, action: exec, with: {{command: {ship}}}}}
      - {{name: done, action: log, with: {{message: \"chain {{{{ params.tag }}}} done\"}}}}
rules:
  - name: chain-on-alert
    match: ['alertname=~\"Crash.*\"']
    runbook: chain
    params: {{tag: \"{{{{ labels.alertname }}}}\"}}
    guards: {{lock: false}}
",
        charge = append("charge"),
        sync = append("sync"),
        ship = append("ship"),
    )
}

fn alerts(round: &str) -> Value {
    let alerts: Vec<Value> = (0..RUNS)
        .map(|index| {
            json!({
                "status": "firing",
                "labels": {"alertname": format!("Crash{round}x{index}")},
                "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "",
            })
        })
        .collect();
    json!({"version": "4", "status": "firing", "receiver": "r", "groupKey": "{}:{}", "alerts": alerts})
}

async fn runs(daemon: &Daemon) -> Vec<Value> {
    daemon.get_json("/api/v1/runs?limit=500").await["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn every_run_finishes_after_a_kill_at_every_failure_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), base_config(dir.path(), "normal"));
    kill_at_every_failure_point(dir.path(), &config).await;
}

/// The same on PostgreSQL: a killed daemon's session ends with it, and so does its lock.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn every_run_finishes_after_a_kill_at_every_failure_point_on_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_server, store)) = crate::support::postgres_store(dir.path(), "crash").await else {
        return;
    };
    let config = config(dir.path(), crate::support::base_config_with_store(&store));
    kill_at_every_failure_point(dir.path(), &config).await;
}

async fn kill_at_every_failure_point(dir: &std::path::Path, config: &str) {
    let mut killed_at = Vec::new();
    for (round, point) in homeostat_engine::failpoint::ALL.iter().enumerate() {
        let armed = format!("{point}@{NTH}");
        let mut daemon = Daemon::start_with_env(
            dir,
            &format!("armed-{round}"),
            config,
            &[("HOMEOSTAT_FAILPOINT", armed.as_str())],
        )
        .await;
        // The runs' first steps start as soon as the alerts commit, so the daemon may kill itself
        // before the answer is out; the alerts and their runs are committed either way, since every
        // failure point is reached only by a run, and runs start after that commit.
        let _ = daemon
            .client()
            .post(daemon.url("/api/v1/hooks/alertmanager"))
            .json(&alerts(&round.to_string()))
            .send()
            .await;
        let status = daemon.wait_exit(Duration::from_secs(20)).await;
        let stderr = daemon.stderr_tail();
        assert!(
            status.is_some(),
            "the daemon did not reach `{point}`:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("failpoint `{point}` reached")),
            "{stderr}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.and_then(|status| status.signal()), Some(9));
        }
        killed_at.push(point.to_string());
        drop(daemon);

        // A plain restart resumes everything.
        let daemon = Daemon::start(dir, &format!("restart-{round}"), config).await;
        let expected = RUNS * (round + 1);
        wait_for(
            "every run to finish",
            Duration::from_secs(30),
            || async {
                let runs = runs(&daemon).await;
                (runs.len() == expected && runs.iter().all(|run| run["status"] != "running"))
                    .then_some(())
            },
            || {
                format!(
                    "runs did not finish after a kill at `{point}`:\n{}",
                    daemon.stderr_tail()
                )
            },
        )
        .await;
    }

    let daemon = Daemon::start(dir, "final", config).await;
    let runs = runs(&daemon).await;
    let effects = std::fs::read_to_string(dir.join("effects.log")).unwrap_or_default();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in effects.lines() {
        let (tag, step) = line.split_once(' ').expect("`TAG STEP`");
        *counts
            .entry((tag.to_string(), step.to_string()))
            .or_default() += 1;
    }
    let count = |tag: &str, step: &str| {
        counts
            .get(&(tag.to_string(), step.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let mut needs_attention = 0;
    for run in &runs {
        let tag = run["plan"]["params"]["tag"].as_str().expect("a tag");
        let status = run["status"].as_str().expect("a status");
        for step in ["charge", "ship"] {
            assert!(
                count(tag, step) <= 1,
                "the non-idempotent step `{step}` of `{tag}` ran {} times:\n{effects}",
                count(tag, step)
            );
        }
        match status {
            "succeeded" => {
                for step in ["charge", "sync", "ship"] {
                    assert!(count(tag, step) >= 1, "`{tag}` succeeded without `{step}`");
                }
                assert_eq!((count(tag, "charge"), count(tag, "ship")), (1, 1));
            }
            "needs_attention" => {
                needs_attention += 1;
                let error = run["error"].as_str().unwrap_or("");
                // Only a non-idempotent step can leave a run unsure, and only once it may have run.
                assert!(
                    error.contains("`charge`") || error.contains("`ship`"),
                    "{error}"
                );
                assert!(!error.contains("`sync`"), "sync is idempotent: {error}");
            }
            other => panic!("run of `{tag}` ended `{other}`: {run}"),
        }
    }
    eprintln!(
        "{} runs after kills at {killed_at:?}: {needs_attention} in needs_attention, effects:\n{effects}",
        runs.len()
    );
    // Killed between an intent and its outcome, some non-idempotent step was in flight.
    assert!(
        needs_attention >= 1,
        "no run stopped in needs_attention after kills at {killed_at:?}"
    );
    assert_eq!(runs.len(), RUNS * homeostat_engine::failpoint::ALL.len());
}
