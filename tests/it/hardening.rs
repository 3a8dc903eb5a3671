//! Issue 11's findings on what automation may touch: `exec` children and the daemon's secrets,
//! event data in URLs, replayed webhook deliveries, and `log` steps caught by a crash.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri};
use homeostat_core::clock::{Clock, SystemClock};
use homeostat_core::ingest::webhook::sign_delivery;
use serde_json::{json, Value};

use crate::api::{get, post, Api, INGEST, READ};
use crate::support::{base_config, serve, wait_for, Daemon};

const WITHIN: Duration = Duration::from_secs(30);

/// Secrets the daemon reads from its environment, each a distinct value to look for.
const DAEMON_SECRETS: &[(&str, &str)] = &[
    (
        "HOMEOSTAT_TEST_SLACK_URL",
        "https://hooks.example/T000/B000/slack-secret-url",
    ),
    ("HOMEOSTAT_TEST_HOOK_KEY", "hook-hmac-secret-key"),
    ("HOMEOSTAT_TEST_PAGER_KEY", "pagerduty-routing-secret"),
    ("HOMEOSTAT_TEST_API_KEY", "api-key-the-step-asks-for"),
];

async fn wait_run_end(daemon: &Daemon, id: &str) -> Value {
    wait_for(
        &format!("run `{id}` to end"),
        WITHIN,
        || async {
            let run = daemon.get_json(&format!("/api/v1/runs/{id}")).await;
            (run["run"]["status"] != "running" && !run["run"]["status"].is_null()).then_some(run)
        },
        || daemon.stderr_tail(),
    )
    .await
}

async fn start_run(daemon: &Daemon, runbook: &str) -> String {
    let answer: Value = daemon
        .client()
        .post(daemon.url(&format!("/api/v1/runbooks/{runbook}/runs")))
        .json(&json!({}))
        .send()
        .await
        .expect("start a run")
        .json()
        .await
        .expect("a JSON answer");
    answer["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run id in {answer}"))
        .to_string()
}

/// Finding 7: an `env` step put every secret of the daemon's environment into the journal and the
/// API. Now a child sees only a minimal environment, plus the secrets its step names, masked in
/// what is journaled.
#[tokio::test]
async fn an_env_step_sees_none_of_the_daemons_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{base}\
sources:
  - {{type: webhook, name: ci, secret: {{env: HOMEOSTAT_TEST_HOOK_KEY}}, labels: {{a: x}}}}
notifiers:
  - {{type: slack, name: chat, webhook_url: {{env: HOMEOSTAT_TEST_SLACK_URL}}}}
  - {{type: pagerduty, name: pager, routing_key: {{env: HOMEOSTAT_TEST_PAGER_KEY}}}}
runbooks:
  - name: show-env
    steps:
      - {{name: plain, action: exec, on_failure: abort, with: {{command: [env]}}}}
      - name: asks
        action: exec
        on_failure: abort
        with: {{command: [env], env: {{API_KEY: {{env: HOMEOSTAT_TEST_API_KEY}}, UNIT: api.service}}}}
",
        base = base_config(dir.path(), "normal"),
    );
    let daemon = Daemon::start_with_env(dir.path(), "env", &config, DAEMON_SECRETS).await;
    let id = start_run(&daemon, "show-env").await;
    let run = wait_run_end(&daemon, &id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");

    let shown = run.to_string();
    for (name, value) in DAEMON_SECRETS {
        assert!(
            !shown.contains(value),
            "`{name}`'s value is in the run: {shown}"
        );
    }
    assert!(
        !shown.contains(crate::support::TOKEN),
        "the API token is in the run"
    );
    let stdout = |step: &str| -> String {
        run["steps"]
            .as_array()
            .and_then(|steps| steps.iter().rev().find(|s| s["step"] == step))
            .and_then(|s| s["output"]["stdout"].as_str())
            .unwrap_or_else(|| panic!("no stdout of `{step}` in {run}"))
            .to_string()
    };
    let plain = stdout("plain");
    assert!(
        plain.lines().any(|line| line.starts_with("PATH=")),
        "{plain}"
    );
    assert!(!plain.contains("HOMEOSTAT_"), "{plain}");
    let asks = stdout("asks");
    assert!(
        asks.lines().any(|line| line == "API_KEY=<redacted>"),
        "{asks}"
    );
    assert!(
        asks.lines().any(|line| line == "UNIT=api.service"),
        "{asks}"
    );
    // The plan names the secret by reference.
    assert!(shown.contains("HOMEOSTAT_TEST_API_KEY"), "{shown}");
}

/// A server that records the path and query of every request it gets.
async fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |uri: Uri| {
        let record = record.clone();
        async move {
            record.lock().expect("lock").push(uri.to_string());
            "ok"
        }
    });
    let (port, _server) = serve(router).await;
    (port, seen)
}

/// Finding 8: the label `../../admin/delete?x=1#` turned `http://h/items/{{ v }}/drain` into a
/// request to `/admin/delete?x=1`.
#[tokio::test]
async fn a_label_cannot_move_an_http_step_to_another_path() {
    let (port, seen) = recorder().await;
    let api = Api::start(&format!(
        r#"rules:
  - name: drain
    match: ['alertname="Drain"']
    guards: {{lock: false}}
    steps:
      - name: drain
        action: http_request
        on_failure: abort
        with: {{method: POST, url: "http://127.0.0.1:{port}/items/{{{{ labels.v }}}}/drain?by={{{{ labels.by }}}}"}}
"#
    ))
    .await;
    let send = |v: &str| {
        post(
            "/api/v1/events",
            Some(INGEST),
            json!({"labels": {"alertname": "Drain", "v": v, "by": "a&b=c"}}).to_string(),
        )
    };
    let (status, _, answer) = api.call(send("../../admin/delete?x=1#")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    wait_for(
        "the drain request",
        WITHIN,
        || async { (!seen.lock().expect("lock").is_empty()).then_some(()) },
        String::new,
    )
    .await;
    assert_eq!(
        *seen.lock().expect("lock"),
        ["/items/..%2F..%2Fadmin%2Fdelete%3Fx%3D1%23/drain?by=a%26b%3Dc"]
    );

    // A value that no encoding keeps in its segment fails the step before any request.
    let (status, _, _) = api.call(send("..")).await;
    assert_eq!(status, StatusCode::OK);
    let failed = wait_for(
        "the second run to fail",
        WITHIN,
        || async {
            let (_, _, runs) = api.call(get("/api/v1/runs", Some(READ))).await;
            runs["runs"]
                .as_array()
                .and_then(|runs| runs.iter().find(|run| run["status"] == "failed").cloned())
        },
        String::new,
    )
    .await;
    let (_, _, run) = api
        .call(get(
            &format!("/api/v1/runs/{}", failed["id"].as_str().expect("an id")),
            Some(READ),
        ))
        .await;
    assert!(
        run.to_string().contains("which would climb the path"),
        "{run}"
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

fn now_secs() -> i64 {
    SystemClock::default().now().timestamp()
}

fn delivery(key: &str, id: &str, timestamp: i64, status: &str) -> (Vec<(String, String)>, String) {
    let body = json!({"service": "checkout", "status": status}).to_string();
    let timestamp = timestamp.to_string();
    let headers = vec![
        ("X-Homeostat-Delivery".to_string(), id.to_string()),
        ("X-Homeostat-Timestamp".to_string(), timestamp.clone()),
        (
            "X-Homeostat-Signature".to_string(),
            sign_delivery(key.as_bytes(), id, &timestamp, body.as_bytes()),
        ),
    ];
    (headers, body)
}

async fn send(daemon: &Daemon, (headers, body): &(Vec<(String, String)>, String)) -> (u16, Value) {
    let mut request = daemon.client().post(daemon.url("/api/v1/hooks/ci"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.body(body.clone()).send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn run_count(daemon: &Daemon) -> usize {
    daemon.get_json("/api/v1/runs?limit=100").await["runs"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Finding 9: a replayed `firing` after its `resolved` started a second remediation. Copies of a
/// delivery are refused within the window, also after a restart, and older ones by their time.
#[tokio::test]
async fn a_replayed_signed_delivery_is_refused_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "hook-hmac-secret-key";
    let config = format!(
        "{base}\
sources:
  - type: webhook
    name: ci
    secret: {{env: HOMEOSTAT_TEST_HOOK_KEY}}
    status: \"{{{{ body.status }}}}\"
    fingerprint: checkout
    labels: {{service: \"{{{{ body.service }}}}\", alertname: CheckoutDown}}
rules:
  - name: fix-checkout
    match: ['alertname=\"CheckoutDown\"']
    guards: {{lock: false, loop: null}}
    verify: null
    steps:
      - {{name: fix, action: log, with: {{message: fixing}}}}
",
        base = base_config(dir.path(), "normal"),
    );
    let env = [("HOMEOSTAT_TEST_HOOK_KEY", key)];
    let mut daemon = Daemon::start_with_env(dir.path(), "first", &config, &env).await;
    let firing = delivery(key, "d-firing", now_secs(), "firing");
    let resolved = delivery(key, "d-resolved", now_secs(), "resolved");
    assert_eq!(send(&daemon, &firing).await.0, 200);
    assert_eq!(send(&daemon, &resolved).await.0, 200);
    let runs = wait_for(
        "the first remediation",
        WITHIN,
        || async {
            let count = run_count(&daemon).await;
            (count > 0).then_some(count)
        },
        || daemon.stderr_tail(),
    )
    .await;
    assert_eq!(runs, 1);

    let (status, answer) = send(&daemon, &firing).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("replayed_delivery")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|message| message.contains("`d-firing`")),
        "{answer}"
    );

    // The journal remembers the delivery across a crash.
    daemon.kill_9();
    drop(daemon);
    let daemon = Daemon::start_with_env(dir.path(), "second", &config, &env).await;
    let (status, answer) = send(&daemon, &firing).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("replayed_delivery")),
        "{answer}"
    );
    // Older than the window: refused by its time, whatever its id.
    let stale = delivery(key, "d-old", now_secs() - 301, "firing");
    let (status, answer) = send(&daemon, &stale).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("stale_delivery")),
        "{answer}"
    );
    // A changed time or id breaks the signature.
    let (mut headers, body) = delivery(key, "d-new", now_secs(), "firing");
    headers[0].1 = "d-other".into();
    let (status, answer) = send(&daemon, &(headers, body)).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (401, Some("invalid_signature")),
        "{answer}"
    );
    assert_eq!(run_count(&daemon).await, 1);
    // A new delivery is accepted as ever.
    let again = delivery(key, "d-firing-2", now_secs(), "firing");
    assert_eq!(send(&daemon, &again).await.0, 200);
}

/// In-process: copies sent at once are refused while the first is on its way to the journal.
#[tokio::test]
async fn concurrent_copies_of_a_delivery_commit_once() {
    let api = Api::start("").await;
    let timestamp = now_secs().to_string();
    let body = r#"{"deploy_id": "d-7", "service": "checkout", "version": "v2"}"#;
    let signature = sign_delivery(
        crate::api::HMAC_KEY.as_bytes(),
        "same",
        &timestamp,
        body.as_bytes(),
    );
    let request = || {
        Request::post("/api/v1/hooks/ci")
            .header("X-Homeostat-Delivery", "same")
            .header("X-Homeostat-Timestamp", &timestamp)
            .header("X-Homeostat-Signature", &signature)
            .body(Body::from(body))
            .expect("request")
    };
    let answers = futures::future::join_all((0..8).map(|_| api.call(request()))).await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|(status, _, _)| status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|status| [200, 409].contains(status)),
        "{statuses:?}"
    );
    let events = api
        .handle
        .store()
        .events(&homeostat_store::EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
}

/// Finding 11: a `log` step in flight at a crash ended its run in `needs_attention`, though `log`
/// touches nothing outside.
#[tokio::test]
async fn a_log_step_in_flight_at_a_crash_completes_on_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{base}\
runbooks:
  - name: noted
    steps:
      - {{name: note, action: log, with: {{message: \"about to restart\"}}}}
",
        base = base_config(dir.path(), "normal"),
    );
    let point = homeostat_engine::failpoint::AFTER_INTENT_COMMIT;
    let armed = format!("{point}@1");
    let mut daemon = Daemon::start_with_env(
        dir.path(),
        "armed",
        &config,
        &[("HOMEOSTAT_FAILPOINT", armed.as_str())],
    )
    .await;
    // The daemon kills itself once the step's intent is committed, maybe before it answers.
    let _ = daemon
        .client()
        .post(daemon.url("/api/v1/runbooks/noted/runs"))
        .json(&json!({}))
        .send()
        .await;
    let status = daemon.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some(), "{}", daemon.stderr_tail());
    assert!(
        daemon
            .stderr_tail()
            .contains(&format!("failpoint `{point}` reached")),
        "{}",
        daemon.stderr_tail()
    );
    drop(daemon);

    let daemon = Daemon::start(dir.path(), "restart", &config).await;
    let runs = daemon.get_json("/api/v1/runs").await;
    let id = runs["runs"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {runs}"))
        .to_string();
    let run = wait_run_end(&daemon, &id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let resumed = run["steps"].as_array().is_some_and(|steps| {
        steps
            .iter()
            .any(|step| step["step"] == "note" && step["status"] == "succeeded")
    });
    assert!(resumed, "{run}");
}
