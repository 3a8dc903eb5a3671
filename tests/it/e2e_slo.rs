//! End to end through a real Prometheus, for SLOs: a test target serves request counters whose
//! error ratio the test raises; the daemon's own SLO evaluation journals the page-level burn-rate
//! event within the expected window, the event opens an incident whose rule runs, the error budget
//! the daemon shows drops accordingly, and the page resolves when the errors stop. Prometheus loads
//! the rules `homeostat slo rules` generates for the same spec, and its own page alert fires too.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::routing::get;
use axum::Router;
use homeostat_core::config::Synchronous;
use homeostat_core::incident::State;
use homeostat_core::Status;
use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{EventQuery, EventRecord, IncidentQuery, Store};
use serde_json::Value;

use crate::support::{base_config, scrape_config, serve, wait_for, Daemon, Prometheus, TOKEN};

/// 99% leaves a 1% budget: 0.1% errors burn it at 0.1x, 50% at 50x, over the page's 14.4x.
const SPEC: &str = r#"version: "prometheus/v1"
service: checkout
labels: {team: payments}
slos:
  - name: availability
    objective: 99
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="e2e",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="e2e"}[{{.window}}]))
    alerting:
      name: CheckoutAvailability
      labels: {service: checkout}
      annotations: {runbook: "https://runbooks.example/checkout"}
      # The ticket's 2h and 1d windows would hold the errors for minutes after they stop.
      ticket_alert: {disable: true}
"#;

const SLO_ID: &str = "checkout-availability";

/// From the errors rising to the page: a few scrapes until the 5m and 1h ratios pass 14.4%, an
/// evaluation, and room for a slow CI machine.
const PAGE_WITHIN: Duration = Duration::from_secs(45);

/// A `/metrics` endpoint whose request counters grow by 100 requests per scrape, `ratio` of them
/// errors. Counting per scrape makes the ratio exact whatever the scrape timing.
struct RequestTarget {
    port: u16,
    ratio: Arc<Mutex<f64>>,
    server: tokio::task::JoinHandle<()>,
}

impl RequestTarget {
    async fn start(ratio: f64) -> RequestTarget {
        let ratio = Arc::new(Mutex::new(ratio));
        let counters = Arc::new(Mutex::new((0.0_f64, 0.0_f64)));
        let router = {
            let ratio = Arc::clone(&ratio);
            Router::new().route(
                "/metrics",
                get(move || {
                    let errors = *ratio.lock().expect("the ratio lock");
                    let (ok, failed) = {
                        let mut counters = counters.lock().expect("the counters lock");
                        counters.0 += 100.0 * (1.0 - errors);
                        counters.1 += 100.0 * errors;
                        *counters
                    };
                    async move {
                        format!(
                            "# TYPE http_requests_total counter\n\
                             http_requests_total{{code=\"200\"}} {ok}\n\
                             http_requests_total{{code=\"500\"}} {failed}\n"
                        )
                    }
                }),
            )
        };
        let (port, server) = serve(router).await;
        RequestTarget {
            port,
            ratio,
            server,
        }
    }

    fn set(&self, ratio: f64) {
        *self.ratio.lock().expect("the ratio lock") = ratio;
    }
}

impl Drop for RequestTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `from` is `queries` or `recordings`: where the daemon reads the error ratios.
fn homeostat_config(
    dir: &Path,
    prometheus: &Prometheus,
    remediations: &Path,
    from: &str,
) -> String {
    std::fs::write(dir.join("checkout-slo.yaml"), SPEC).expect("write the spec");
    let script = format!(
        "echo paged for {{{{ labels.sloth_id }}}} >> '{}'",
        remediations.display()
    );
    base_config(dir, "normal")
        + &format!(
            r#"prometheus: {{url: {url:?}}}
slos:
  - file: checkout-slo.yaml
    interval_secs: 1
    from: {from}
rules:
  - name: page-checkout
    match: ['alertname="CheckoutAvailability"', 'sloth_severity="page"']
    on_incident: [opened]
    target: "{{{{ labels.service }}}}"
    steps:
      - name: remediate
        action: exec
        with:
          command: ["/bin/sh", "-c", {script:?}]
          shell: false
        timeout_secs: 10
"#,
            url = prometheus.url("")
        )
}

struct Stack {
    prometheus: Prometheus,
    store: SqliteStore,
    daemon: Daemon,
    target: RequestTarget,
    remediations: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    async fn start(from: &str) -> Stack {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let remediations = dir.path().join("remediations.log");
        let target = RequestTarget::start(0.001).await;
        let spec = homeostat_core::slo::parse(SPEC).expect("the spec is valid");
        let rules = homeostat_core::slo::generate(&spec, homeostat_core::slo::Period::Days30);
        let prometheus =
            Prometheus::start(&scrape_config(target.port), &rules.to_yaml(), &[]).await;
        let daemon = Daemon::start(
            dir.path(),
            "homeostat",
            &homeostat_config(dir.path(), &prometheus, &remediations, from),
        )
        .await;
        let store = SqliteStore::open(&dir.path().join("homeostat.db"), Synchronous::Normal)
            .await
            .expect("open the daemon's store");
        Stack {
            prometheus,
            store,
            daemon,
            target,
            remediations,
            _dir: dir,
        }
    }

    fn context(&self) -> String {
        format!(
            "remediations: {:?}\n--- homeostat stderr:\n{}\n--- prometheus stderr:\n{}",
            std::fs::read_to_string(&self.remediations).unwrap_or_default(),
            self.daemon.stderr_tail(),
            self.prometheus.stderr_tail(),
        )
    }

    async fn slo(&self) -> Value {
        self.daemon
            .get_json(&format!("/api/v1/slos/{SLO_ID}"))
            .await
    }

    async fn slo_events(&self) -> Vec<EventRecord> {
        self.store
            .events(&EventQuery {
                limit: 100,
                source: Some("slo".into()),
                ..Default::default()
            })
            .await
            .expect("read the events")
    }

    /// The SLO once an evaluation had data (a budget to show).
    async fn wait_evaluated(&self, what: &str) -> Value {
        wait_for(
            what,
            Duration::from_secs(30),
            || async {
                let slo = self.slo().await;
                series(&slo)["budget_remaining_percent"]
                    .as_f64()
                    .is_some()
                    .then_some(slo)
            },
            || self.context(),
        )
        .await
    }

    /// The first burn-rate event with `status`.
    async fn wait_event(&self, what: &str, within: Duration, status: Status) -> EventRecord {
        wait_for(
            what,
            within,
            || async {
                self.slo_events()
                    .await
                    .into_iter()
                    .find(|record| record.event.status == status)
            },
            || self.context(),
        )
        .await
    }

    /// The labels of Prometheus' own page from the generated rules, once it fires.
    async fn prometheus_page_labels(&self) -> Option<std::collections::BTreeMap<String, String>> {
        let url = self.prometheus.url("/api/v1/query");
        let query = r#"ALERTS{alertname="CheckoutAvailability", sloth_severity="page", alertstate="firing"}"#;
        let reply = self
            .daemon
            .client()
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: Value = reply.json().await.unwrap_or_default();
        let metric = body["data"]["result"].get(0)?.get("metric")?.clone();
        let mut labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(metric).ok()?;
        labels.remove("__name__");
        labels.remove("alertstate");
        Some(labels)
    }
}

fn series(slo: &Value) -> &Value {
    &slo["series"][0]
}

/// The budget the status shows is the one its own 30d error ratio gives: `1 - ratio / budget`.
fn assert_budget_consistent(slo: &Value) {
    let ratio = series(slo)["error_ratio"]["30d"]
        .as_f64()
        .unwrap_or_else(|| panic!("no 30d ratio: {slo:#}"));
    let remaining = series(slo)["budget_remaining_percent"]
        .as_f64()
        .unwrap_or_else(|| panic!("no budget: {slo:#}"));
    let expected = 100.0 * (1.0 - ratio / 0.01);
    assert!(
        (remaining - expected).abs() < 0.01,
        "budget {remaining}% does not follow from the 30d ratio {ratio}: {slo:#}"
    );
}

#[tokio::test]
async fn a_fast_burn_pages_opens_an_incident_spends_the_budget_and_resolves() {
    let stack = Stack::start("queries").await;

    // 0.1% errors against a 1% budget: 10% of it spent, nothing fires.
    let steady = stack.wait_evaluated("the first evaluation with data").await;
    let before = series(&steady)["budget_remaining_percent"]
        .as_f64()
        .unwrap();
    assert!((85.0..=95.0).contains(&before), "{steady:#}");
    assert_budget_consistent(&steady);
    assert_eq!(steady["objective"], 99.0);
    assert_eq!(steady["error_budget"], 0.01);
    assert_eq!(series(&steady)["firing"], serde_json::json!([]));
    assert!(stack.slo_events().await.is_empty());
    // The dashboard shows the budget left as a bar with its figure.
    let page = stack.daemon.page("/slos").await;
    assert!(page.contains(&format!("<code>{SLO_ID}</code>")), "{page}");
    assert!(page.contains("error budget left: "), "{page}");
    assert!(page.contains("class=\"budget-ok\""), "{page}");

    // Half the requests fail: 50x the budget's pace.
    let raised = Instant::now();
    stack.target.set(0.5);
    let page = stack
        .wait_event(
            "the daemon's page-level burn-rate event",
            PAGE_WITHIN,
            Status::Firing,
        )
        .await;
    let detected_in = raised.elapsed();
    let event = &page.event;
    assert_eq!(event.labels["alertname"], "CheckoutAvailability");
    // The labels of the generated alert rule: Sloth's `sloth_severity`, no `severity`.
    assert_eq!(event.labels["sloth_severity"], "page");
    assert!(
        !event.labels.contains_key("severity"),
        "{:#?}",
        event.labels
    );
    assert_eq!(event.labels["sloth_id"], SLO_ID);
    assert_eq!(event.labels["team"], "payments");
    assert_eq!(
        event.annotations["runbook"],
        "https://runbooks.example/checkout"
    );
    assert!(
        event.annotations["summary"].contains("(page limit 14.4x)"),
        "{:#?}",
        event.annotations
    );
    eprintln!("page event {detected_in:?} after the errors rose");

    // The event opened an incident, and the incident's rule ran.
    let incident = wait_for(
        "an incident for the page",
        Duration::from_secs(20),
        || async {
            let incidents = stack
                .store
                .incidents(&IncidentQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("read the incidents");
            incidents.into_iter().next()
        },
        || stack.context(),
    )
    .await;
    let members = stack
        .store
        .incident_members(incident.id)
        .await
        .expect("read the members");
    assert!(
        members
            .iter()
            .any(|member| member.fingerprint == event.fingerprint),
        "{members:#?}"
    );
    let remediations = &stack.remediations;
    wait_for(
        "the incident's rule to run",
        Duration::from_secs(20),
        || async move {
            std::fs::read_to_string(remediations)
                .ok()
                .filter(|text| text.contains(&format!("paged for {SLO_ID}")))
        },
        || stack.context(),
    )
    .await;

    // The budget the daemon shows has dropped with the errors: overspent, the page firing.
    let burning = stack.slo().await;
    let after = series(&burning)["budget_remaining_percent"]
        .as_f64()
        .unwrap();
    assert!(
        after < before - 10.0,
        "before {before}%, after {after}%: {burning:#}"
    );
    assert_budget_consistent(&burning);
    assert_eq!(series(&burning)["firing"], serde_json::json!(["page"]));
    assert!(series(&burning)["burn_rate"]["5m"].as_f64().unwrap() > 14.4);

    // Prometheus, with the generated rules, pages on the same burn, with the same labels.
    let prometheus_labels = wait_for(
        "Prometheus' own page alert from the generated rules",
        Duration::from_secs(20),
        || async { stack.prometheus_page_labels().await },
        || stack.context(),
    )
    .await;
    let daemon_labels: std::collections::BTreeMap<String, String> = event
        .labels
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    assert_eq!(prometheus_labels, daemon_labels);

    // `homeostat slo status` shows it.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(["slo", "status"])
        .env("HOMEOSTAT_SERVER", stack.daemon.url(""))
        .env("HOMEOSTAT_TOKEN", TOKEN)
        .env_remove("HOMEOSTAT_CONFIG")
        .env("HOMEOSTAT_LOG", "warn")
        .output()
        .await
        .expect("homeostat slo status runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(table.contains(SLO_ID) && table.contains("page"), "{table}");

    // The errors stop: the 5m ratio falls under 14.4%, the page resolves and so does the incident.
    stack.target.set(0.0);
    stack
        .wait_event(
            "the page to resolve",
            Duration::from_secs(90),
            Status::Resolved,
        )
        .await;
    wait_for(
        "the incident to resolve",
        Duration::from_secs(20),
        || async {
            let incident = stack.store.incident(incident.id).await.ok().flatten()?;
            (incident.state == State::Resolved).then_some(())
        },
        || stack.context(),
    )
    .await;
    let metrics = stack
        .daemon
        .client()
        .get(stack.daemon.url("/metrics"))
        .send()
        .await;
    let metrics = metrics
        .expect("GET /metrics")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        metrics.contains(&format!(
            "homeostat_slo_error_budget_remaining_ratio{{slo=\"{SLO_ID}\"}}"
        )),
        "{metrics}"
    );
}

/// The same burn read from the recordings of the generated rules (`from: recordings`), which
/// Prometheus evaluates itself: the daemon pages on them as on its own queries.
#[tokio::test]
async fn reading_the_generated_recordings_pages_the_same() {
    let stack = Stack::start("recordings").await;
    let steady = stack
        .wait_evaluated("the first evaluation with the recordings")
        .await;
    // The recordings' own labels (`sloth_window`, the ids) do not make separate series.
    assert_eq!(
        steady["series"].as_array().map(Vec::len),
        Some(1),
        "{steady:#}"
    );
    assert_eq!(
        series(&steady)["labels"],
        serde_json::json!({}),
        "{steady:#}"
    );
    assert_budget_consistent(&steady);
    stack.target.set(0.5);
    let page = stack
        .wait_event("the page from the recordings", PAGE_WITHIN, Status::Firing)
        .await;
    assert_eq!(page.event.labels["sloth_severity"], "page");
    assert_eq!(page.event.labels["sloth_id"], SLO_ID);
    let burning = stack.slo().await;
    assert_budget_consistent(&burning);
    assert_eq!(series(&burning)["firing"], serde_json::json!(["page"]));
}
