//! Shadow mode with the real binary: a rule tried in dry run first, then switched live (the
//! daemon restarted on the same store with `dry_run: false`), acts on the first real fault on the
//! same target at once. The dry runs armed no live cooldown and used none of the live `max_runs`,
//! and every event's verdict says what became of it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{base_config, wait_for, Daemon};

fn alert(starts_at: &str) -> Value {
    json!({
        "version": "4",
        "status": "firing",
        "receiver": "homeostat",
        "groupKey": "{}:{alertname=\"ApiDown\"}",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "ApiDown", "service": "api", "instance": "api-1", "severity": "page"},
            "annotations": {},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "",
        }],
    })
}

fn config(dir: &std::path::Path, dry_run: bool) -> String {
    let marker = dir.join("restarted");
    format!(
        "{}dry_run: {dry_run}\n\
         runs: {{max_targets: 1}}\n\
         rules:\n\
         \x20 - name: restart-api\n\
         \x20   match: ['alertname=\"ApiDown\"']\n\
         \x20   target: \"{{{{ labels.instance }}}}\"\n\
         \x20   guards: {{cooldown_secs: 3600, max_runs: {{count: 1, window_secs: 3600}}}}\n\
         \x20   steps:\n\
         \x20     - {{name: restart, action: exec, with: {{command: [touch, {marker:?}]}}}}\n",
        base_config(dir, "normal"),
        marker = marker.display().to_string(),
    )
}

/// Posts one alert and answers the id of the event it became.
async fn post(daemon: &Daemon, starts_at: &str) -> String {
    let response = daemon
        .client()
        .post(daemon.url("/api/v1/hooks/alertmanager"))
        .json(&alert(starts_at))
        .send()
        .await
        .expect("post the alert");
    assert!(
        response.status().is_success(),
        "{}: {}",
        response.status(),
        daemon.stderr_tail()
    );
    let events = daemon.get_json("/api/v1/events?limit=1").await;
    events["events"][0]["id"]
        .as_str()
        .expect("the newest event has an id")
        .to_string()
}

/// The verdicts of an event, from `GET /api/v1/events/{id}`.
async fn verdicts(daemon: &Daemon, id: &str) -> Vec<Value> {
    let body = daemon.get_json(&format!("/api/v1/events/{id}")).await;
    body["event"]["verdicts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn dry_run_then_live_on_the_same_target_runs_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("restarted");

    let shadow = Daemon::start(dir.path(), "shadow", &config(dir.path(), true)).await;
    let first = post(&shadow, "2026-01-01T00:00:00Z").await;
    let said = verdicts(&shadow, &first).await;
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0]["kind"], "dry_run", "{said:?}");
    assert_eq!(said[0]["rule"], "restart-api");
    assert!(said[0]["run"].is_string(), "{said:?}");
    // Again, within the cooldown: the dry runs' own books hold it back, and say so.
    let second = post(&shadow, "2026-01-01T00:01:00Z").await;
    let said = verdicts(&shadow, &second).await;
    assert_eq!(said[0]["kind"], "skipped", "{said:?}");
    let detail = said[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("dry run would have been skipped: cooldown"),
        "{detail}"
    );
    assert!(said[0]["until"].is_string(), "{said:?}");
    // The events list carries the same verdicts.
    let listed = shadow.get_json("/api/v1/events?limit=2").await;
    assert_eq!(listed["events"][0]["verdicts"][0]["kind"], "skipped");
    assert_eq!(listed["events"][1]["verdicts"][0]["kind"], "dry_run");
    assert!(!marker.exists(), "a dry run executes nothing");
    // Shadow mode's count of what it would have run: one dry run, the skipped one not counted.
    let metrics = shadow
        .client()
        .get(shadow.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    assert!(
        metrics
            .lines()
            .any(|line| line == "homeostat_runs_finished_total{status=\"dry_run\"} 1"),
        "{metrics}"
    );
    drop(shadow);

    // Live now, on the same store: the guards are rebuilt from the journal, dry runs apart.
    let live = Daemon::start(dir.path(), "live", &config(dir.path(), false)).await;
    let third = post(&live, "2026-01-01T00:02:00Z").await;
    let said = verdicts(&live, &third).await;
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(
        said[0]["kind"],
        "acted",
        "the first live fault runs at once: {said:?}\n{}",
        live.stderr_tail()
    );
    let run = said[0]["run"].as_str().expect("the run's id").to_string();
    wait_for(
        "the live run to succeed",
        Duration::from_secs(20),
        || async {
            let body = live.get_json(&format!("/api/v1/runs/{run}")).await;
            (body["run"]["status"] == "succeeded").then_some(())
        },
        || live.stderr_tail(),
    )
    .await;
    assert!(marker.exists(), "the live run executed its step");
    // And the live books count live runs: the next fault within the cooldown is held back.
    let fourth = post(&live, "2026-01-01T00:03:00Z").await;
    let said = verdicts(&live, &fourth).await;
    assert_eq!(said[0]["kind"], "skipped", "{said:?}");
    assert!(
        said[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("skipped: cooldown"),
        "{said:?}"
    );
}
