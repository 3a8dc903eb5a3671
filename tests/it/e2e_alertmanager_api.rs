//! homeostat as a drop-in Alertmanager, checked with the real clients: Prometheus posts its alerts
//! straight to `/api/v2/alerts` (no Alertmanager in between), and `amtool` adds, queries and
//! expires silences and queries alerts, each with the bearer token of homeostat's API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    base_config, scrape_config, wait_for, Daemon, Prometheus, ScrapeTarget, TOKEN,
};

const AMTOOL: &str = "/usr/bin/amtool";

const DEADLINE: Duration = Duration::from_secs(60);

/// `amtool` pointed at the daemon, with the token from an `http_config` file.
fn amtool(daemon: &Daemon, http_config: &Path, args: &[&str]) -> (bool, String, String) {
    assert!(
        Path::new(AMTOOL).exists(),
        "`{AMTOOL}` is missing: install the Debian package `amtool`; .ci/run does"
    );
    let output = Command::new(AMTOOL)
        .arg(format!("--alertmanager.url={}", daemon.url("/")))
        .arg(format!("--http.config.file={}", http_config.display()))
        .args(args)
        .env("HOME", http_config.parent().expect("a directory"))
        .output()
        .expect("run amtool");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn http_config(dir: &Path, token: &str) -> std::path::PathBuf {
    let path = dir.join(format!("amtool-http-{}.yml", token.len()));
    std::fs::write(
        &path,
        format!("authorization:\n  type: Bearer\n  credentials: {token:?}\n"),
    )
    .expect("write the http config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_adds_queries_and_expires_silences() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let daemon = Daemon::start(dir.path(), "homeostat", &base_config(dir.path(), "normal")).await;
    let config = http_config(dir.path(), TOKEN);

    // Without the token, amtool is refused.
    let wrong = http_config(dir.path(), "not-the-token");
    let (ok, _, stderr) = amtool(&daemon, &wrong, &["silence", "query"]);
    assert!(!ok, "an unknown token must be refused: {stderr}");

    // The regex as Alertmanager configs write it: its backslash reaches the regex.
    let (ok, stdout, stderr) = amtool(
        &daemon,
        &config,
        &[
            "silence",
            "add",
            "alertname=ApiDown",
            r#"instance=~"web-\d+""#,
            "--comment=database migration",
            "--duration=2h",
            "--author=oncall",
        ],
    );
    assert!(ok, "amtool silence add: {stderr}\n{}", daemon.stderr_tail());
    let id = stdout.trim().to_string();
    assert!(!id.is_empty(), "amtool prints the new silence's id");

    let (ok, stdout, stderr) = amtool(&daemon, &config, &["silence", "query", "-o", "json"]);
    assert!(ok, "amtool silence query: {stderr}");
    let listed: Value = serde_json::from_str(&stdout).expect("amtool's JSON");
    let silence = listed
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} not in {listed:#}"));
    assert_eq!(silence["status"]["state"], "active", "{silence:#}");
    assert_eq!(silence["createdBy"], "oncall");
    assert_eq!(silence["comment"], "database migration");
    let matchers = silence["matchers"].as_array().expect("matchers");
    assert!(
        matchers.iter().any(|m| m["name"] == "instance"
            && m["value"] == r"web-\d+"
            && m["isRegex"] == true
            && m["isEqual"] == true),
        "{silence:#}"
    );

    // homeostat's own view is the same silence, matching `instance="web-1"` and not `web-x`.
    let own = daemon.get_json(&format!("/api/v1/silences/{id}")).await;
    let own_matchers: Vec<&str> = own["silence"]["matchers"]
        .as_array()
        .expect("matchers")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(own_matchers.contains(&r#"instance=~"web-\\d+""#), "{own:#}");
    let parsed: Vec<homeostat_core::matcher::Matcher> = own_matchers
        .iter()
        .flat_map(|text| homeostat_core::matcher::parse_list(text).expect("parses"))
        .collect();
    let labels = |instance: &str| {
        homeostat_core::Labels::from([
            ("alertname".to_string(), "ApiDown".to_string()),
            ("instance".to_string(), instance.to_string()),
        ])
    };
    assert!(homeostat_core::matcher::all_match(
        &parsed,
        &labels("web-1")
    ));
    assert!(!homeostat_core::matcher::all_match(
        &parsed,
        &labels("web-x")
    ));

    // A filter narrows the query, as in Alertmanager: by the silence's own matchers.
    let (ok, stdout, _) = amtool(
        &daemon,
        &config,
        &["silence", "query", "-q", "alertname=ApiDown"],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), id);
    let (ok, stdout, _) = amtool(
        &daemon,
        &config,
        &["silence", "query", "-q", "alertname=Other"],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), "");

    let (ok, _, stderr) = amtool(&daemon, &config, &["silence", "expire", &id]);
    assert!(ok, "amtool silence expire: {stderr}");
    let (ok, stdout, _) = amtool(&daemon, &config, &["silence", "query", "-q"]);
    assert!(ok);
    assert_eq!(
        stdout.trim(),
        "",
        "an expired silence is not listed as active"
    );
    let (ok, stdout, _) = amtool(
        &daemon,
        &config,
        &["silence", "query", "--expired", "-o", "json"],
    );
    assert!(ok);
    let expired: Value = serde_json::from_str(&stdout).expect("amtool's JSON");
    assert!(
        expired.as_array().is_some_and(|all| all
            .iter()
            .any(|s| s["id"] == id.as_str() && s["status"]["state"] == "expired")),
        "{expired:#}"
    );
}

const ALERT_RULES: &str = r#"groups:
  - name: direct
    rules:
      - alert: DirectDown
        expr: homeostat_e2e_up == 0
        for: 0s
        labels: {severity: page}
        annotations: {summary: "checkout is down"}
"#;

/// Prometheus sends to homeostat as to an Alertmanager, with the token from its own config.
fn prometheus_config(target_port: u16, homeostat_port: u16) -> String {
    scrape_config(target_port)
        + &format!(
            r#"alerting:
  alertmanagers:
    - api_version: v2
      authorization: {{type: Bearer, credentials: {TOKEN:?}}}
      static_configs:
        - targets: ["127.0.0.1:{homeostat_port}"]
"#
        )
}

async fn direct_events(daemon: &Daemon, status: &str) -> Vec<Value> {
    let listed = daemon
        .get_json("/api/v1/events?source=alertmanager_api&limit=1000")
        .await;
    listed["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|event| event["labels"]["alertname"] == "DirectDown" && event["status"] == status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sends_alerts_straight_to_homeostat() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let daemon = Daemon::start(dir.path(), "homeostat", &base_config(dir.path(), "normal")).await;
    let target = ScrapeTarget::start(1.0).await;
    let prometheus = Prometheus::start(
        &prometheus_config(target.port, daemon.port),
        ALERT_RULES,
        &["--rules.alert.resend-delay=1s"],
    )
    .await;
    let (daemon, target) = (&daemon, &target);
    let context = || {
        format!(
            "--- homeostat stderr:\n{}\n--- prometheus stderr:\n{}",
            daemon.stderr_tail(),
            prometheus.stderr_tail()
        )
    };
    wait_for(
        "Prometheus to scrape the target",
        Duration::from_secs(30),
        move || async move { (target.scrapes() >= 1).then_some(()) },
        context,
    )
    .await;
    target.set(0.0);

    let firing = wait_for(
        "the firing alert from Prometheus",
        DEADLINE,
        move || async move { direct_events(daemon, "firing").await.first().cloned() },
        context,
    )
    .await;
    assert_eq!(firing["source"], "alertmanager_api", "{firing:#}");
    assert_eq!(firing["labels"]["severity"], "page");
    assert_eq!(firing["labels"]["job"], "e2e");
    assert_eq!(firing["annotations"]["summary"], "checkout is down");
    assert!(
        firing["data"]["generator_url"]
            .as_str()
            .is_some_and(|url| url.contains("homeostat_e2e_up")),
        "{firing:#}"
    );

    // amtool reads the active alert back from homeostat's `GET /api/v2/alerts`.
    let config = http_config(dir.path(), TOKEN);
    let (ok, stdout, stderr) = amtool(daemon, &config, &["alert", "query", "-o", "json"]);
    assert!(ok, "amtool alert query: {stderr}");
    let alerts: Value = serde_json::from_str(&stdout).expect("amtool's JSON");
    assert!(
        alerts
            .as_array()
            .is_some_and(|all| all.iter().any(|a| a["labels"]["alertname"] == "DirectDown")),
        "{alerts:#}"
    );

    // Prometheus's repeats (every second here) are the same alert, held once.
    target.set(1.0);
    let resolved = wait_for(
        "the resolution from Prometheus",
        DEADLINE,
        move || async move { direct_events(daemon, "resolved").await.first().cloned() },
        context,
    )
    .await;
    assert_eq!(
        resolved["fingerprint"], firing["fingerprint"],
        "{resolved:#}"
    );
}
