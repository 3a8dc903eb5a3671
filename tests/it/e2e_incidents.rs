//! End to end through real Prometheus and Alertmanager, for incidents: several alerts on one service
//! become one incident, a rule on the incident's opening remediates it and the incident resolves
//! when its alerts do; a fix that does not help is escalated, and its loop is stopped.
//!
//! Incident state is read straight from the daemon's SQLite file, through a second connection
//! beside the daemon's as `homeostat runs` does, so these tests do not depend on the shape of the
//! HTTP API's incident endpoints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use homeostat_core::config::Synchronous;
use homeostat_core::incident::{Incident, IncidentId, State};
use homeostat_core::{EventKind, Status};
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{
    EventQuery, IncidentQuery, JournalEntry, RunQuery, RunRecord, RunStatus, Store,
};
use serde_json::Value;

use crate::support::{
    alerting_config, alertmanager_config, base_config, tail, wait_for, Alertmanager, Daemon,
    Prometheus, ScrapeTarget,
};

/// Long enough for a scrape, an evaluation, Alertmanager's dispatch, the `exec` step and the
/// verification deadlines below, with room for a slow CI machine.
const CHAIN_DEADLINE: Duration = Duration::from_secs(60);

const RULE: &str = "restart-checkout";

/// Three alerts on the one gauge of the one service, with different label sets: the first two carry
/// the target's `job` and `instance`, the third is aggregated down to `service`. All three must
/// correlate into one incident by `service`.
const ALERT_RULES: &str = r#"groups:
  - name: checkout
    rules:
      - alert: CheckoutDown
        expr: homeostat_e2e_up == 0
        for: 0s
        labels: {severity: page, service: checkout}
        annotations: {summary: "checkout is down"}
      - alert: CheckoutErrorBudgetBurn
        expr: homeostat_e2e_up < 1
        for: 0s
        labels: {severity: ticket, service: checkout}
        annotations: {summary: "checkout burns its error budget"}
      - alert: CheckoutNoHealthyInstances
        expr: sum by (service) (homeostat_e2e_up) == 0
        for: 0s
        labels: {severity: page}
        annotations: {summary: "checkout has no healthy instance"}
"#;

const ALERT_NAMES: [&str; 3] = [
    "CheckoutDown",
    "CheckoutErrorBudgetBurn",
    "CheckoutNoHealthyInstances",
];

/// A homeostat config whose one rule runs on `on_incident` and appends a line to `remediations`;
/// `rule_extra` and `top_extra` add fields to the rule and top-level sections.
fn homeostat_config(
    dir: &Path,
    remediations: &Path,
    on_incident: &str,
    rule_extra: &str,
    top_extra: &str,
) -> String {
    // The line names what the rule saw, so the test checks the incident's labels reached the step.
    let script = format!(
        "echo remediated {{{{ labels.service }}}} for incident {{{{ labels.incident }}}} on {{{{ labels.transition }}}} >> '{}'",
        remediations.display()
    );
    base_config(dir, "normal")
        + top_extra
        + &format!(
            r#"rules:
  - name: {RULE}
    match: ['service="checkout"']
    on_incident: {on_incident}
    target: "{{{{ labels.service }}}}"
{rule_extra}    steps:
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

/// A loopback HTTP server that keeps every body POSTed to `/notices`: the escalation notifier.
struct Notices {
    url: String,
    received: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Notices {
    async fn start() -> Notices {
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = {
            let received = Arc::clone(&received);
            Router::new().route(
                "/notices",
                post(move |body: String| {
                    let received = Arc::clone(&received);
                    async move {
                        received.lock().expect("the notices lock").push(body);
                        axum::http::StatusCode::OK
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the notice server");
        let port = listener.local_addr().expect("local address").port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Notices {
            url: format!("http://127.0.0.1:{port}/notices"),
            received,
            server,
        }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("the notices lock").clone()
    }
}

impl Drop for Notices {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Everything one test runs: the scrape target, homeostat, Alertmanager and Prometheus, and the
/// daemon's store opened beside it. Each test has its own, in its own temp dir and on its own ports.
struct Stack {
    // Dropped in this order: Prometheus first, so nothing new is sent while the rest stops.
    prometheus: Prometheus,
    alertmanager: Alertmanager,
    store: SqliteStore,
    daemon: Daemon,
    target: ScrapeTarget,
    remediations: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(on_incident: &str, rule_extra: &str, top_extra: &str) -> Stack {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let remediations = dir.path().join("remediations.log");
        let target = ScrapeTarget::start(1.0).await;
        let config = homeostat_config(
            dir.path(),
            &remediations,
            on_incident,
            rule_extra,
            top_extra,
        );
        let daemon = Daemon::start(dir.path(), "homeostat", &config).await;
        // The daemon created and migrated the file; this handle only reads it.
        let store = SqliteStore::open(&dir.path().join("homeostat.db"), Synchronous::Normal)
            .await
            .expect("open the daemon's store");
        // Repeats are frequent on purpose: a repeated notification of a still-firing alert must
        // not count as a new member, reopen anything or trigger the rule again.
        let alertmanager =
            Alertmanager::start(&alertmanager_config(&daemon, "[alertname, service]", "2s")).await;
        let prometheus = Prometheus::start(
            &alerting_config(target.port, alertmanager.port),
            ALERT_RULES,
            // Without it a resolve reaches Alertmanager up to a minute late.
            &["--rules.alert.resend-delay=1s"],
        )
        .await;
        Stack {
            prometheus,
            alertmanager,
            store,
            daemon,
            target,
            remediations,
            _dir: dir,
        }
    }

    /// What a failure message shows: the remediations and the end of every process's log.
    fn context(&self, notices: Option<&Notices>) -> String {
        format!(
            "remediations.log: {:?}\nnotices: {:#?}\n--- homeostat stderr:\n{}\n--- alertmanager stderr:\n{}\n--- prometheus stderr:\n{}",
            lines(&self.remediations),
            notices.map(Notices::received).unwrap_or_default(),
            self.daemon.stderr_tail(),
            self.alertmanager.stderr_tail(),
            self.prometheus.stderr_tail(),
        )
    }

    /// Waits for Prometheus to have seen the service up, so the alerts come from a later flip.
    async fn wait_scraped(&self) {
        let target = &self.target;
        wait_for(
            "Prometheus to scrape the target",
            Duration::from_secs(30),
            move || async move { (target.scrapes() >= 1).then_some(()) },
            || self.context(None),
        )
        .await;
    }

    async fn incidents(&self) -> Vec<Incident> {
        self.store
            .incidents(&IncidentQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("read the incidents")
    }

    /// The one incident there is, if any; more than one fails the test at once.
    async fn only_incident(&self) -> Option<Incident> {
        let incidents = self.incidents().await;
        assert!(
            incidents.len() <= 1,
            "the alerts of one service opened more than one incident: {incidents:#?}\n{}",
            self.context(None)
        );
        incidents.into_iter().next()
    }

    async fn runs(&self) -> Vec<RunRecord> {
        self.store
            .runs(&RunQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("read the runs")
    }

    /// The incident's own timeline entries (not the runs' and decisions' journal), oldest first.
    async fn timeline(&self, incident: IncidentId) -> Vec<JournalEntry> {
        self.store
            .incident_timeline(incident)
            .await
            .expect("read the timeline")
            .into_iter()
            .filter(|entry| entry.incident_id == Some(incident))
            .collect()
    }

    /// The decisions journaled for an event, as `{rule, target, verdict, ...}` objects.
    async fn decisions(&self, event_id: &str) -> Vec<Value> {
        self.store
            .journal_for_event(event_id)
            .await
            .expect("read the event's journal")
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

    async fn metrics(&self) -> String {
        let response = self
            .daemon
            .client()
            .get(self.daemon.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.text().await.expect("the metrics text")
    }

    /// Fails the test if a run of the rule ended other than `succeeded`: the step is an `echo`.
    fn check_runs_succeed(&self, runs: &[RunRecord]) {
        for run in runs {
            assert!(
                matches!(run.status, RunStatus::Running | RunStatus::Succeeded),
                "a remediation run did not succeed: {run:#?}\n{}",
                self.context(None)
            );
        }
    }
}

fn kinds(timeline: &[JournalEntry]) -> Vec<&str> {
    timeline.iter().map(|entry| entry.kind()).collect()
}

fn summary(entry: &JournalEntry) -> String {
    entry.body()["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The timeline as a person reads it, each entry's time from the first: printed by a passing test.
fn render(timeline: &[JournalEntry]) -> String {
    let start = timeline.first().map(|entry| entry.at);
    timeline
        .iter()
        .map(|entry| {
            let offset = start.map_or(0, |start| (entry.at - start).num_milliseconds());
            format!(
                "  +{:>6.3}s {:<16} {}",
                offset as f64 / 1000.0,
                entry.kind(),
                summary(entry)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_alerts_from_one_target_become_one_incident_that_resolves_after_remediation() {
    let stack = Stack::start(
        "[opened]",
        "",
        "incidents: {group_by: [service], sweep_secs: 1}\n",
    )
    .await;
    let stack = &stack;
    let context = || stack.context(None);
    stack.wait_scraped().await;

    // A deploy just before the failure: context for the incident, not a member of it.
    let response = stack
        .daemon
        .client()
        .post(stack.daemon.url("/api/v1/events"))
        .json(&serde_json::json!({
            "kind": "change",
            "labels": {"service": "checkout", "change": "deploy", "version": "v2"},
            "annotations": {"summary": "deployed checkout v2"},
        }))
        .send()
        .await
        .expect("POST the change event");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{}", context());
    stack.target.set(0.0);

    // The remediation ran once, for the incident all three alerts joined. The step cannot reach the
    // scrape target, so the test plays the fix taking effect as soon as the step has run: it does
    // not wait for homeostat to have recorded the run's success, which must mitigate the incident
    // even when the alerts resolve right after.
    let incident = wait_for(
        "one incident with all three alerts, and its remediation",
        CHAIN_DEADLINE,
        move || async move {
            let incident = stack.only_incident().await?;
            let runs = stack.runs().await;
            assert!(runs.len() <= 1, "more than one run: {runs:#?}");
            stack.check_runs_succeed(&runs);
            (incident.members_total == 3 && lines(&stack.remediations).len() == 1)
                .then_some(incident)
        },
        context,
    )
    .await;
    stack.target.set(1.0);

    let resolved = wait_for(
        "the incident to resolve once its alerts do",
        CHAIN_DEADLINE,
        move || async move {
            let incident = stack.only_incident().await?;
            (incident.state == State::Resolved).then_some(incident)
        },
        context,
    )
    .await;
    let id = incident.id;
    assert_eq!(resolved.id, id);
    assert_eq!(
        resolved.group_key, r#"{service="checkout"}"#,
        "{resolved:#?}"
    );
    assert_eq!(resolved.members_total, 3, "{resolved:#?}");
    assert_eq!(resolved.members_firing, 0, "{resolved:#?}");
    assert_eq!(resolved.reopened, 0, "{resolved:#?}");
    assert!(!resolved.escalated, "{resolved:#?}");
    assert_eq!(resolved.resolved_by.as_deref(), Some("homeostat"));
    let mitigated_at = resolved.mitigated_at.unwrap_or_else(|| {
        panic!(
            "the remediation succeeded before the alerts resolved, but the incident was never \
                 mitigated: {resolved:#?}\n{}",
            context()
        )
    });
    let resolved_at = resolved
        .resolved_at
        .expect("a resolved incident has resolved_at");
    assert!(
        resolved.opened_at <= mitigated_at && mitigated_at <= resolved_at,
        "opened, mitigated and resolved out of order: {resolved:#?}"
    );

    // Its members: the three alerts, each resolved, each with the labels it was sent with.
    let members = stack
        .store
        .incident_members(id)
        .await
        .expect("read the members");
    let mut names: Vec<&str> = members
        .iter()
        .map(|member| member.labels.get("alertname").map_or("", String::as_str))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ALERT_NAMES, "{members:#?}");
    for member in &members {
        assert_eq!(member.source, "alertmanager", "{member:#?}");
        assert_eq!(member.status, Status::Resolved, "{member:#?}");
        assert_eq!(
            member.labels.get("service").map(String::as_str),
            Some("checkout"),
            "{member:#?}"
        );
    }

    // The one run: the rule's, for the incident, succeeded, with the incident's labels.
    let runs = stack.runs().await;
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let run = &runs[0];
    assert_eq!(run.rule, RULE, "{run:#?}");
    assert_eq!(run.target, "checkout", "{run:#?}");
    assert_eq!(run.incident_id, Some(id), "{run:#?}");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert!(!run.dry_run, "{run:#?}");
    assert_eq!(
        lines(&stack.remediations),
        [format!("remediated checkout for incident {id} on opened")],
        "{}",
        context()
    );

    // The timeline tells the story in order.
    let timeline = stack.timeline(id).await;
    let story = kinds(&timeline);
    let position = |kind: &str| {
        story
            .iter()
            .position(|entry| *entry == kind)
            .unwrap_or_else(|| panic!("no `{kind}` on the timeline: {timeline:#?}"))
    };
    assert_eq!(position("opened"), 0, "{timeline:#?}");
    // By time, not by journal order: when the alerts resolve in the very batch that brings the
    // run's success, the mitigation is journaled after the resolve, stamped when the run finished.
    let time = |kind: &str| timeline[position(kind)].at;
    assert!(
        position("opened") < position("mitigated")
            && time("opened") <= time("mitigated")
            && time("mitigated") <= time("resolved"),
        "{timeline:#?}"
    );
    for kind in ["member_added", "member_resolved"] {
        assert_eq!(
            story.iter().filter(|entry| **entry == kind).count(),
            3,
            "three `{kind}` entries: {timeline:#?}"
        );
    }
    for kind in ["escalated", "reopened", "flapping"] {
        assert!(!story.contains(&kind), "{timeline:#?}");
    }
    assert!(
        summary(&timeline[position("mitigated")]).contains(&run.id),
        "the mitigation names its run: {timeline:#?}"
    );

    // The deploy is journaled as a `change` of the incident's group, received before the incident
    // opened and within `change_lookback_secs` (3600 by default): where an incident's recent changes
    // are looked up. No API shows an incident's context yet, so that is as far as this checks.
    let changes = stack
        .store
        .events(&EventQuery {
            limit: 10,
            kind: Some(EventKind::Change),
            label: Some(("service".into(), "checkout".into())),
            ..Default::default()
        })
        .await
        .expect("read the change events");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let change = &changes[0].event;
    assert!(
        change.received_at <= resolved.opened_at
            && resolved.opened_at - change.received_at <= chrono::Duration::seconds(3600),
        "the change is not a recent change of the incident: {change:#?} {resolved:#?}"
    );
    assert!(
        members
            .iter()
            .all(|member| member.first_event_id != change.id),
        "a change became a member: {members:#?}"
    );

    // The durations land in /metrics once the resolving batch is committed.
    let metrics = wait_for(
        "the incident's durations in /metrics",
        Duration::from_secs(10),
        move || async move {
            let metrics = stack.metrics().await;
            metrics
                .contains("homeostat_incident_duration_seconds_count{phase=\"resolve\"} 1\n")
                .then_some(metrics)
        },
        context,
    )
    .await;
    for phase in ["detect", "mitigate"] {
        let line = format!("homeostat_incident_duration_seconds_count{{phase=\"{phase}\"}} 1\n");
        assert!(
            metrics.contains(&line),
            "no `{line}` in /metrics:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("homeostat_incident_duration_seconds_count{phase=\"acknowledge\"}"),
        "nobody acknowledged the incident:\n{metrics}"
    );
    println!(
        "e2e incidents: incident {id} resolved {:.1}s after it opened:\n{}\ndaemon log:\n{}",
        (resolved_at - resolved.opened_at).num_milliseconds() as f64 / 1000.0,
        render(&timeline),
        tail(&stack.daemon.stderr_path, 12),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_that_does_not_help_escalates_and_disables_the_rule_for_the_target() {
    let notices = Notices::start().await;
    let stack = Stack::start(
        "[opened, escalated]",
        "    verify: {within_secs: 2}\n    guards: {loop: {runs: 2, window_secs: 3600}, cooldown_secs: 0}\n",
        &format!(
            "notifiers:\n  - {{type: webhook, name: oncall, url: {url:?}}}\n\
             incidents: {{group_by: [service], sweep_secs: 1, escalation_notifier: oncall}}\n",
            url = notices.url
        ),
    )
    .await;
    let (stack, notices) = (&stack, &notices);
    let context = || stack.context(Some(notices));
    stack.wait_scraped().await;
    // The service goes down and stays down: every remediation "succeeds" and changes nothing.
    stack.target.set(0.0);

    // Opened: run 1. It succeeds, the alerts do not resolve within 2 s: escalated, run 2. Same
    // again: escalated, and run 3 would be the loop's third, so it is stopped and the rule disabled.
    let incident = wait_for(
        "the remediation loop to be stopped",
        CHAIN_DEADLINE,
        move || async move {
            let incident = stack.only_incident().await?;
            let runs = stack.runs().await;
            assert!(runs.len() <= 2, "a third run started: {runs:#?}");
            stack.check_runs_succeed(&runs);
            assert!(
                lines(&stack.remediations).len() <= 2,
                "a third remediation ran"
            );
            let timeline = stack.timeline(incident.id).await;
            timeline
                .iter()
                .any(|entry| entry.kind() == "escalated" && summary(entry).contains("disabled"))
                .then_some(incident)
        },
        context,
    )
    .await;
    let id = incident.id;

    // Three escalations, so three notices; once they are in, nothing is left to happen.
    let received = wait_for(
        "a notice for each escalation",
        Duration::from_secs(30),
        move || async move {
            let received = notices.received();
            (received.len() >= 3).then_some(received)
        },
        context,
    )
    .await;

    let incident = stack.only_incident().await.expect("the incident");
    assert_eq!(incident.id, id);
    assert!(incident.escalated, "{incident:#?}");
    assert!(incident.escalated_at.is_some(), "{incident:#?}");
    assert_ne!(incident.state, State::Resolved, "{incident:#?}");
    assert_eq!(incident.resolved_at, None, "{incident:#?}");
    assert_eq!(incident.members_firing, 3, "{incident:#?}");

    // Exactly two runs, both for the incident, both succeeded: the first on its opening, the second
    // on the escalation that followed the first.
    let mut runs = stack.runs().await;
    runs.reverse();
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for run in &runs {
        assert_eq!(run.rule, RULE, "{run:#?}");
        assert_eq!(run.target, "checkout", "{run:#?}");
        assert_eq!(run.incident_id, Some(id), "{run:#?}");
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    }
    assert_eq!(
        lines(&stack.remediations),
        [
            format!("remediated checkout for incident {id} on opened"),
            format!("remediated checkout for incident {id} on escalated"),
        ],
        "{}",
        context()
    );

    // The timeline: opened, mitigated and escalated twice (the verification failed after each run),
    // then escalated for the loop, with the rule disabled for the target.
    let timeline = stack.timeline(id).await;
    let story: Vec<&str> = kinds(&timeline)
        .into_iter()
        .filter(|kind| matches!(*kind, "opened" | "mitigated" | "escalated" | "resolved"))
        .collect();
    assert_eq!(
        story,
        [
            "opened",
            "mitigated",
            "escalated",
            "mitigated",
            "escalated",
            "escalated"
        ],
        "{timeline:#?}"
    );
    let escalations: Vec<&JournalEntry> = timeline
        .iter()
        .filter(|entry| entry.kind() == "escalated")
        .collect();
    // Each escalation records, on the timeline, who was told.
    let notified: Vec<&JournalEntry> = timeline
        .iter()
        .filter(|entry| entry.kind() == "notified")
        .collect();
    assert_eq!(notified.len(), escalations.len(), "{timeline:#?}");
    assert!(
        notified
            .iter()
            .all(|entry| summary(entry).starts_with("told `")),
        "{timeline:#?}"
    );
    for (escalation, run) in escalations.iter().zip(&runs) {
        let text = summary(escalation);
        assert!(
            text.contains(&run.id) && text.contains("did not resolve within 2s"),
            "the verification's escalation names its run and deadline: {text}"
        );
    }
    let stopped = summary(escalations[2]);
    assert!(
        stopped.contains("remediation loop")
            && stopped.contains("disabled")
            && stopped.contains(&format!("`{RULE}`"))
            && stopped.contains("`checkout`"),
        "the loop's escalation: {stopped}"
    );

    // The third run was decided and stopped by the loop guard, on the second verification's
    // escalation; the loop's own escalation then found the rule disabled.
    let second = escalations[1]
        .event_id
        .as_deref()
        .expect("an escalation's event");
    let decided = stack.decisions(second).await;
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(decided[0]["rule"], RULE, "{decided:#?}");
    assert_eq!(decided[0]["target"], "checkout", "{decided:#?}");
    assert_eq!(decided[0]["verdict"], "skipped", "{decided:#?}");
    assert_eq!(decided[0]["skip"]["guard"], "loop", "{decided:#?}");
    assert_eq!(decided[0]["skip"]["runs"], 3, "{decided:#?}");
    let last = escalations[2]
        .event_id
        .as_deref()
        .expect("an escalation's event");
    let decided = stack.decisions(last).await;
    assert_eq!(decided.len(), 1, "{decided:#?}");
    assert_eq!(decided[0]["verdict"], "skipped", "{decided:#?}");
    assert_eq!(decided[0]["skip"]["guard"], "disabled", "{decided:#?}");

    // People were told, by the escalation notifier, what escalated and what was tried.
    let bodies: Vec<Value> = received
        .iter()
        .map(|body| serde_json::from_str(body).expect("a notice is JSON"))
        .collect();
    let summaries: Vec<&str> = bodies
        .iter()
        .map(|body| body["summary"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(summaries.len(), 3, "{summaries:#?}");
    assert!(
        summaries
            .iter()
            .all(|text| text.starts_with(&format!("incident {id} escalated"))),
        "{summaries:#?}"
    );
    assert!(
        summaries
            .iter()
            .any(|text| text.contains("remediation loop")
                && text.contains(&format!("rule `{RULE}` on `checkout` (2 runs)"))),
        "a notice says the loop was stopped and what was tried: {summaries:#?}"
    );
    println!(
        "e2e incidents: incident {id} escalated 3 times after 2 runs:\n{}\ndaemon log:\n{}",
        render(&timeline),
        tail(&stack.daemon.stderr_path, 12),
    );
}
