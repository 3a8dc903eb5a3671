//! End to end through real Prometheus and Alertmanager: a gauge drops, the alert fires, homeostat
//! restarts the service exactly once, and neither repeated notifications nor the resolve run it again.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    alerting_config, alertmanager_config, base_config, tail, wait_for, Alertmanager, Daemon,
    Prometheus, ScrapeTarget,
};

/// Long enough for a scrape, an evaluation, Alertmanager's dispatch and the `exec` step, with room
/// for a slow CI machine; on a quiet one the whole chain takes a few seconds.
const CHAIN_DEADLINE: Duration = Duration::from_secs(60);

const RULE: &str = "restart-checkout";

const ALERT_RULES: &str = r#"groups:
  - name: e2e
    rules:
      - alert: E2EServiceDown
        expr: homeostat_e2e_up == 0
        for: 0s
        labels: {severity: page}
        annotations: {summary: "checkout is down"}
"#;

fn homeostat_config(dir: &Path, restarts: &Path) -> String {
    // The argv form with `shell: false`: `/bin/sh` is the program, not an implicit shell.
    let script = format!(
        "echo restarted {{{{ labels.service }}}} >> '{}'",
        restarts.display()
    );
    base_config(dir, "normal")
        + &format!(
            r#"rules:
  - name: {RULE}
    match: ['alertname="E2EServiceDown"']
    target: "{{{{ labels.service }}}}"
    guards: {{cooldown_secs: 300}}
    steps:
      - name: restart
        action: exec
        with:
          command: ["/bin/sh", "-c", {script:?}]
          shell: false
        timeout_secs: 10
"#
        )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn array<'a>(value: &'a Value, field: &str) -> &'a Vec<Value> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("`{field}` is not an array in {value}"))
}

/// The events from Alertmanager for the e2e alert with `status`, oldest first.
async fn alert_events(daemon: &Daemon, status: &str) -> Vec<Value> {
    let listed = daemon
        .get_json("/api/v1/events?source=alertmanager&limit=1000")
        .await;
    let mut events: Vec<Value> = array(&listed, "events")
        .iter()
        .filter(|event| {
            event["labels"]["alertname"] == "E2EServiceDown" && event["status"] == status
        })
        .cloned()
        .collect();
    events.reverse();
    events
}

/// The decisions journaled for an event, once the decider has got to it.
fn decisions(detail: &Value) -> Vec<Value> {
    array(detail, "journal")
        .iter()
        .filter(|entry| entry["kind"] == "decision")
        .flat_map(|entry| array(&entry["body"], "decisions").clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_through_prometheus_and_alertmanager_restarts_once() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let restarts = dir.path().join("restarts.log");
    let target = ScrapeTarget::start(1.0).await;
    let daemon = Daemon::start(
        dir.path(),
        "homeostat",
        &homeostat_config(dir.path(), &restarts),
    )
    .await;
    // `repeat_interval` is short on purpose: a repeated notification of a still-firing alert must
    // arrive during the test, so that "repeats do not restart again" is checked, not assumed.
    let alertmanager =
        Alertmanager::start(&alertmanager_config(&daemon, "[alertname, service]", "2s")).await;
    let prometheus = Prometheus::start(
        &alerting_config(target.port, alertmanager.port),
        ALERT_RULES,
        // Prometheus 2.42 has the flag; without it a resolve reaches Alertmanager up to a minute late.
        &["--rules.alert.resend-delay=1s"],
    )
    .await;
    let (daemon, target, restarts) = (&daemon, &target, restarts.as_path());
    let context = || {
        format!(
            "restarts.log: {:?}\n--- homeostat stderr:\n{}\n--- alertmanager stderr:\n{}\n--- prometheus stderr:\n{}",
            lines(restarts),
            daemon.stderr_tail(),
            alertmanager.stderr_tail(),
            prometheus.stderr_tail(),
        )
    };

    // The service is up until Prometheus has seen it up, so the alert comes from the flip below.
    wait_for(
        "Prometheus to scrape the target",
        Duration::from_secs(30),
        move || async move { (target.scrapes() >= 1).then_some(()) },
        context,
    )
    .await;
    target.set(0.0);

    let run = wait_for(
        "one restart and a succeeded run",
        CHAIN_DEADLINE,
        move || async move {
            let listed = daemon.get_json("/api/v1/runs").await;
            let runs = array(&listed, "runs");
            assert!(runs.len() <= 1, "more than one run: {listed:#}");
            let run = runs.first()?;
            if run["status"] == "failed" || run["status"] == "needs_attention" {
                let detail = daemon
                    .get_json(&format!("/api/v1/runs/{}", run["id"].as_str()?))
                    .await;
                panic!("the restart run did not succeed: {detail:#}");
            }
            (run["status"] == "succeeded" && lines(restarts).len() == 1).then(|| run.clone())
        },
        context,
    )
    .await;
    assert_eq!(lines(restarts), ["restarted checkout"]);
    assert_eq!(run["rule"], RULE);
    assert_eq!(run["target"], "checkout");
    assert_eq!(run["dry_run"], false);

    // The journal of the firing event: it came through Alertmanager, and it was decided and run.
    let event_id = run["event_id"].as_str().expect("the run names its event");
    let detail = daemon.get_json(&format!("/api/v1/events/{event_id}")).await;
    let event = &detail["event"];
    assert_eq!(event["source"], "alertmanager", "{detail:#}");
    assert_eq!(event["status"], "firing", "{detail:#}");
    assert_eq!(event["labels"]["alertname"], "E2EServiceDown", "{detail:#}");
    assert_eq!(event["labels"]["service"], "checkout", "{detail:#}");
    assert_eq!(event["labels"]["severity"], "page", "{detail:#}");
    assert_eq!(event["labels"]["job"], "e2e", "{detail:#}");
    assert_eq!(event["data"]["receiver"], "homeostat", "{detail:#}");
    let all: Vec<&str> = array(&detail, "journal")
        .iter()
        .filter_map(|entry| entry["kind"].as_str())
        .collect();
    assert!(
        all.contains(&"opened") && all.contains(&"member_added"),
        "the alert opened an incident: {detail:#}"
    );
    let kinds: Vec<&str> = all
        .into_iter()
        .filter(|kind| matches!(*kind, "decision" | "run_started"))
        .collect();
    assert_eq!(
        kinds,
        ["decision", "run_started"],
        "the decision is journaled before the run it starts: {detail:#}"
    );
    let decided = decisions(&detail);
    assert_eq!(decided.len(), 1, "{detail:#}");
    assert_eq!(decided[0]["rule"], RULE, "{detail:#}");
    assert_eq!(decided[0]["target"], "checkout", "{detail:#}");
    assert_eq!(decided[0]["verdict"], "run", "{detail:#}");
    let started = array(&detail, "journal")
        .iter()
        .find(|entry| entry["kind"] == "run_started")
        .cloned()
        .unwrap_or_default();
    assert_eq!(started["run_id"], run["id"], "{detail:#}");

    // Alertmanager repeats the still-firing alert every `repeat_interval`; a repeat is recorded as an
    // event but must not start a second run.
    let firing = wait_for(
        "a repeated notification of the firing alert",
        Duration::from_secs(30),
        move || async move {
            let firing = alert_events(daemon, "firing").await;
            (firing.len() >= 2).then_some(firing)
        },
        context,
    )
    .await;
    for repeat in firing.iter().filter(|event| event["id"] != event_id) {
        assert_eq!(repeat["fingerprint"], event["fingerprint"], "{repeat:#}");
        let detail = daemon
            .get_json(&format!(
                "/api/v1/events/{}",
                repeat["id"].as_str().unwrap_or_default()
            ))
            .await;
        assert!(
            decisions(&detail)
                .iter()
                .all(|decision| decision["verdict"] != "run"),
            "a repeated notification was decided as a new run: {detail:#}"
        );
    }

    // The service recovers; the resolve is recorded and decided as `ignored_status`.
    target.set(1.0);
    let resolved = wait_for(
        "the resolved notification and its decision",
        CHAIN_DEADLINE,
        move || async move {
            let resolved = alert_events(daemon, "resolved").await;
            let first = resolved.first()?;
            let detail = daemon
                .get_json(&format!("/api/v1/events/{}", first["id"].as_str()?))
                .await;
            (!array(&detail, "journal").is_empty()).then_some(detail)
        },
        context,
    )
    .await;
    assert_eq!(
        resolved["event"]["fingerprint"], event["fingerprint"],
        "{resolved:#}"
    );
    let decided = decisions(&resolved);
    assert_eq!(decided.len(), 1, "{resolved:#}");
    assert_eq!(decided[0]["rule"], RULE, "{resolved:#}");
    assert_eq!(decided[0]["verdict"], "ignored_status", "{resolved:#}");
    assert!(
        array(&resolved, "journal")
            .iter()
            .all(|entry| entry["kind"] != "run_started"),
        "the resolve started something: {resolved:#}"
    );
    // ...and it resolved the incident the alert had opened.
    assert!(
        array(&resolved, "journal")
            .iter()
            .any(|entry| entry["kind"] == "resolved"),
        "the resolve did not resolve the incident: {resolved:#}"
    );

    // A run for the resolve would have been journaled with its decision, which is in, so these
    // counts are final, not a snapshot that a late run could still change.
    let all_runs = daemon.get_json("/api/v1/runs").await;
    assert_eq!(array(&all_runs, "runs").len(), 1, "{all_runs:#}");
    assert_eq!(lines(restarts), ["restarted checkout"], "{}", context());
    let firing = alert_events(daemon, "firing").await;
    println!(
        "e2e: {} firing notifications (1 run), {} resolved; daemon log:\n{}",
        firing.len(),
        alert_events(daemon, "resolved").await.len(),
        tail(&daemon.stderr_path, 12),
    );
}
