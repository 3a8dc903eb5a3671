//! Reloading the config while the daemon runs, and one daemon per store: in process through
//! `POST /-/reload`, then the real binary with SIGHUP, a run waiting on an approval, sources that
//! change or do not, and a second daemon on the same database.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get as route_get;
use axum::Router;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::api::{compile, get, post, Api, INGEST, READ, WRITE};
use crate::support::{base_config, serve, wait_for, Daemon, TOKEN};

/// How long a run or a reload gets to show; both take milliseconds.
const WITHIN: Duration = Duration::from_secs(20);

/// An Alertmanager webhook with one firing alert.
fn alert(name: &str, instance: &str) -> String {
    json!({"version": "4", "status": "firing", "receiver": "homeostat", "groupKey": "{}",
           "alerts": [{"status": "firing", "labels": {"alertname": name, "instance": instance},
                       "annotations": {}, "startsAt": "2026-11-24T10:00:00Z",
                       "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""}],
           "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
           "truncatedAlerts": 0})
    .to_string()
}

/// The decisions journaled for the event of alert `name`, found among the latest events.
async fn decisions_in_process(api: &Api, name: &str) -> Vec<Value> {
    let (status, _, events) = api.call(get("/api/v1/events?limit=50", Some(READ))).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let id = events["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|event| event["labels"]["alertname"] == name)
        })
        .and_then(|event| event["id"].as_str())
        .unwrap_or_else(|| panic!("no event of `{name}` in {events:#}"))
        .to_string();
    let (status, _, shown) = api
        .call(get(&format!("/api/v1/events/{id}"), Some(READ)))
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    decisions_of(&shown)
}

fn decisions_of(shown: &Value) -> Vec<Value> {
    shown["journal"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["kind"] == "decision")
        .flat_map(|entry| {
            entry["decisions"]
                .as_array()
                .or_else(|| entry["body"]["decisions"].as_array())
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

const FIX_V1: &str = r#"
rules:
  - name: fix
    match: ['alertname=~"Down.*"']
    target: "{{ labels.instance }}"
    guards: {cooldown_secs: 3600, lock: false}
    steps:
      - {name: first, action: log, with: {message: "fix v1"}}
"#;

const FIX_V2: &str = r#"
rules:
  - name: fix
    match: ['alertname=~"Down.*"']
    target: "{{ labels.instance }}"
    guards: {cooldown_secs: 3600, lock: false}
    steps:
      - {name: second, action: log, with: {message: "fix v2"}}
  - name: other
    match: ['alertname="Other"']
    steps:
      - {name: say, action: log, with: {message: other}}
"#;

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn reload_over_the_api_swaps_rules_keeps_the_cooldown_and_refuses_a_bad_config() {
    let api = Api::start(FIX_V1).await;
    // Without a file to read from (an engine started in process), there is nothing to reload.
    let (status, _, body) = api.call(post("/-/reload", Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "reload_unavailable");
    // Reloading changes what the daemon does: the write scope.
    let (status, _, body) = api.call(post("/-/reload", Some(READ), "")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden_scope");

    let (status, _, body) = api
        .call(post(
            "/api/v1/hooks/alertmanager",
            Some(INGEST),
            alert("Down", "i1"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let decided = decisions_in_process(&api, "Down").await;
    assert_eq!(decided[0]["verdict"], "run", "{decided:#?}");

    let dir = api._dir.path().to_path_buf();
    let next = Arc::new(std::sync::Mutex::new(FIX_V2.to_string()));
    {
        let next = next.clone();
        api.handle.set_loader(Arc::new(move || {
            let extra = next.lock().expect("lock").clone();
            // A broken `extra` is refused with what parsing it says (the binary's own loader is
            // tested end to end below).
            if extra.contains("gaurds") {
                let parsed = homeostat_core::config::parse(&[(
                    dir.join("c.yaml"),
                    format!(
                        "store: {{path: {:?}}}\n{extra}",
                        dir.join("h.db").display().to_string()
                    ),
                )]);
                return Err(match parsed {
                    Err(diagnostics) => format!("{diagnostics}\nerror: the config is invalid"),
                    Ok(_) => "expected the typo to be refused".into(),
                });
            }
            Ok(compile(&dir, &extra))
        }));
    }
    let (status, _, summary) = api.call(post("/-/reload", Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["reloaded"], true);
    assert_eq!(summary["rules_added"], json!(["other"]));
    assert_eq!(summary["rules_changed"], json!(["fix"]));
    assert_eq!(summary["rules_removed"], json!([]));
    assert_eq!(summary["needs_restart"], json!([]));
    assert_eq!(api.handle.compiled().rules.len(), 2);

    // The cooldown `fix` started on `i1` before the reload still holds after it.
    api.call(post(
        "/api/v1/hooks/alertmanager",
        Some(INGEST),
        alert("DownAgain", "i1"),
    ))
    .await;
    let decided = decisions_in_process(&api, "DownAgain").await;
    assert_eq!(decided[0]["verdict"], "skipped", "{decided:#?}");
    assert_eq!(decided[0]["skip"]["guard"], "cooldown", "{decided:#?}");
    // Another target runs the new definition.
    api.call(post(
        "/api/v1/hooks/alertmanager",
        Some(INGEST),
        alert("Down", "i2"),
    ))
    .await;
    let (_, _, runs) = api
        .call(get("/api/v1/runs?rule=fix&limit=10", Some(READ)))
        .await;
    let on_i2 = runs["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|run| run["target"] == "i2"))
        .and_then(|run| run["id"].as_str())
        .unwrap_or_else(|| panic!("no run on i2: {runs:#}"))
        .to_string();
    let run = wait_for(
        "the run on i2 to succeed",
        WITHIN,
        || async {
            let (_, _, run) = api
                .call(get(&format!("/api/v1/runs/{on_i2}"), Some(READ)))
                .await;
            (run["run"]["status"] == "succeeded").then_some(run)
        },
        String::new,
    )
    .await;
    let steps: Vec<&str> = run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["step"].as_str())
        .collect();
    assert_eq!(steps, ["second"], "{run:#}");

    // A config with a typo is refused with what `check` says; the one in use stays.
    *next.lock().expect("lock") = FIX_V2.replace("guards", "gaurds");
    let (status, _, body) = api.call(post("/-/reload", Some(WRITE), "")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_config");
    assert_eq!(body["type"], "invalid_request");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("gaurds") && message.contains("the config is invalid"),
        "{message}"
    );
    assert_eq!(api.handle.compiled().rules.len(), 2);
    let (_, _, metrics) = api.call(get("/metrics", None)).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert_eq!(
        metric(&metrics, "homeostat_config_last_reload_successful"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "homeostat_config_last_reload_success_timestamp_seconds"
        )
        .is_some_and(|at| at > 1.7e9),
        "{metrics}"
    );
}

/// A runbook with an approval between two log steps; `version` is in the last step's name.
fn gated_config(dir: &std::path::Path, version: &str) -> String {
    format!(
        "{base}runbooks:
  - name: gated
    steps:
      - {{name: prepare, action: log, with: {{message: \"prepare {version}\"}}}}
      - name: ok
        approval: {{approvers: [test], message: \"apply it?\"}}
      - {{name: apply_{version}, action: log, with: {{message: \"applied {version}\"}}}}
rules:
  - name: fix
    match: ['alertname=~\"Down.*\"']
    target: \"{{{{ labels.instance }}}}\"
    guards: {{cooldown_secs: 3600}}
    runbook: gated
",
        base = base_config(dir, "normal"),
    )
}

async fn post_json(daemon: &Daemon, path: &str, body: String) -> (reqwest::StatusCode, Value) {
    let response = daemon
        .client()
        .post(daemon.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn metrics(daemon: &Daemon) -> String {
    daemon
        .client()
        .get(daemon.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text")
}

/// The id of the run of `fix` on `target`, once it waits for its approval.
async fn waiting_run(daemon: &Daemon, target: &str) -> String {
    wait_for(
        &format!("a run on `{target}` waiting for its approval"),
        WITHIN,
        || async {
            let runs = daemon.get_json("/api/v1/runs?rule=fix&limit=20").await;
            let id = runs["runs"]
                .as_array()?
                .iter()
                .find(|run| run["target"] == target)?["id"]
                .as_str()?
                .to_string();
            let run = daemon.get_json(&format!("/api/v1/runs/{id}")).await;
            let waiting = run["pending_approvals"]
                .as_array()
                .is_some_and(|pending| !pending.is_empty());
            waiting.then_some(id)
        },
        || daemon.stderr_tail(),
    )
    .await
}

/// Approves run `id` and waits for it to succeed; its step names in order.
async fn approve_and_finish(daemon: &Daemon, id: &str) -> Vec<String> {
    let (status, body) = post_json(
        daemon,
        &format!("/api/v1/runs/{id}/approval"),
        json!({"approve": true}).to_string(),
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
    let run = wait_for(
        &format!("run `{id}` to succeed"),
        WITHIN,
        || async {
            let run = daemon.get_json(&format!("/api/v1/runs/{id}")).await;
            (run["run"]["status"] == "succeeded").then_some(run)
        },
        || daemon.stderr_tail(),
    )
    .await;
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["step"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_while_a_run_waits_and_the_run_finishes_on_its_journaled_definition() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let daemon = Daemon::start(dir.path(), "homeostat", &gated_config(dir.path(), "v1")).await;
    assert_eq!(
        metric(
            &metrics(&daemon).await,
            "homeostat_config_last_reload_successful"
        ),
        Some(1.0)
    );
    let (status, body) =
        post_json(&daemon, "/api/v1/hooks/alertmanager", alert("Down", "i1")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let first = waiting_run(&daemon, "i1").await;

    // A good config: the runbook's last step is renamed.
    std::fs::write(&daemon.config_path, gated_config(dir.path(), "v2")).expect("write v2");
    daemon.signal(Signal::SIGHUP);
    wait_for(
        "the reloaded runbook to be in use",
        WITHIN,
        || async {
            let shown = daemon.get_json("/api/v1/runbooks/gated").await;
            (shown["runbook"]["steps"][2]["name"] == "apply_v2").then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;
    // The guards `fix` holds on `i1` (its lock, its cooldown) survived the reload.
    post_json(
        &daemon,
        "/api/v1/hooks/alertmanager",
        alert("DownAgain", "i1"),
    )
    .await;
    let events = daemon.get_json("/api/v1/events?limit=20").await;
    let again = events["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|event| event["labels"]["alertname"] == "DownAgain")
        })
        .and_then(|event| event["id"].as_str())
        .expect("the second alert's event")
        .to_string();
    let decided = decisions_of(&daemon.get_json(&format!("/api/v1/events/{again}")).await);
    assert_eq!(decided[0]["verdict"], "skipped", "{decided:#?}");
    // A new run plans the new definition.
    post_json(&daemon, "/api/v1/hooks/alertmanager", alert("Down", "i2")).await;
    let second = waiting_run(&daemon, "i2").await;

    // A bad config is refused: the daemon keeps serving the one in use, and says why.
    std::fs::write(
        &daemon.config_path,
        gated_config(dir.path(), "v3").replace("guards", "gaurds"),
    )
    .expect("write the bad config");
    daemon.signal(Signal::SIGHUP);
    wait_for(
        "the refused reload to show in the metrics",
        WITHIN,
        || async {
            let text = metrics(&daemon).await;
            (metric(&text, "homeostat_config_last_reload_successful") == Some(0.0)).then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;
    let log = daemon.stderr_tail();
    assert!(
        log.contains("config reload refused") && log.contains("gaurds"),
        "the log says why: {log}"
    );
    let ready = daemon
        .client()
        .get(daemon.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let shown = daemon.get_json("/api/v1/runbooks/gated").await;
    assert_eq!(shown["runbook"]["steps"][2]["name"], "apply_v2");

    // Each run finishes on the definition it journaled.
    assert_eq!(
        approve_and_finish(&daemon, &first).await,
        ["prepare", "ok", "apply_v1"]
    );
    assert_eq!(
        approve_and_finish(&daemon, &second).await,
        ["prepare", "ok", "apply_v2"]
    );

    // POST /-/reload answers the refusal as `check` prints it, then takes the fixed config.
    let (status, body) = post_json(&daemon, "/-/reload", String::new()).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_config");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("gaurds")),
        "{body}"
    );
    std::fs::write(
        &daemon.config_path,
        gated_config(dir.path(), "v3").replace("synchronous: normal", "synchronous: full"),
    )
    .expect("write v3");
    let (status, summary) = post_json(&daemon, "/-/reload", String::new()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{summary}");
    assert_eq!(summary["runbooks_changed"], json!(["gated"]), "{summary}");
    assert_eq!(
        summary["needs_restart"],
        json!(["store.synchronous"]),
        "{summary}"
    );
    let text = metrics(&daemon).await;
    assert_eq!(
        metric(&text, "homeostat_config_last_reload_successful"),
        Some(1.0)
    );
}

/// A loopback server whose `/a` and `/b` answer 500 and count their requests.
async fn failing_targets() -> (
    u16,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<()>,
) {
    let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let router = {
        let (a, b) = (a.clone(), b.clone());
        Router::new()
            .route(
                "/a",
                route_get(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::INTERNAL_SERVER_ERROR }
                }),
            )
            .route(
                "/b",
                route_get(move || {
                    b.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::INTERNAL_SERVER_ERROR }
                }),
            )
    };
    let (port, server) = serve(router).await;
    (port, a, b, server)
}

/// Probe `b` fires on its second failure, `B_INTERVAL_SECS` after its first.
const B_INTERVAL_SECS: u64 = 6;

fn probes_config(dir: &std::path::Path, port: u16, a_version: &str) -> String {
    format!(
        "{base}sources:
  - {{type: http_probe, name: a, url: \"http://127.0.0.1:{port}/a\", interval_secs: 3600, labels: {{version: \"{a_version}\"}}}}
  - {{type: http_probe, name: b, url: \"http://127.0.0.1:{port}/b\", interval_secs: {B_INTERVAL_SECS}, failure_threshold: 2}}
",
        base = base_config(dir, "normal"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_the_changed_source_and_the_unchanged_one_keeps_its_state() {
    let (port, a, b, server) = failing_targets().await;
    let dir = tempfile::tempdir().expect("create a temp dir");
    let daemon = Daemon::start(
        dir.path(),
        "homeostat",
        &probes_config(dir.path(), port, "1"),
    )
    .await;
    wait_for(
        "both probes' first request",
        WITHIN,
        || async { (a.load(Ordering::SeqCst) == 1 && b.load(Ordering::SeqCst) == 1).then_some(()) },
        || daemon.stderr_tail(),
    )
    .await;
    // `b` has one failure in memory; one more fires it.
    std::fs::write(&daemon.config_path, probes_config(dir.path(), port, "2")).expect("write");
    let (status, summary) = post_json(&daemon, "/-/reload", String::new()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{summary}");
    assert_eq!(
        b.load(Ordering::SeqCst),
        1,
        "the reload must come before `b`'s second request for this test to tell anything"
    );
    assert_eq!(
        summary["sources"]["restarted"],
        json!(["http_probe/a"]),
        "{summary}"
    );
    assert_eq!(
        summary["sources"]["unchanged"],
        json!(["http_probe/b"]),
        "{summary}"
    );
    assert_eq!(summary["sources"]["started"], json!([]), "{summary}");
    // A restarted probe starts with a request at once.
    wait_for(
        "the restarted probe's first request",
        WITHIN,
        || async { (a.load(Ordering::SeqCst) == 2).then_some(()) },
        || daemon.stderr_tail(),
    )
    .await;
    // `b` kept its task and its count: it fires on its second request, as if nothing happened.
    // A fresh task would have asked at once and fired on the third.
    let fired = wait_for(
        "probe `b` to fire",
        Duration::from_secs(B_INTERVAL_SECS * 3),
        || async {
            let events = daemon.get_json("/api/v1/events?source=b&limit=10").await;
            let fired = events["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|event| event["status"] == "firing"));
            fired.then(|| b.load(Ordering::SeqCst))
        },
        || daemon.stderr_tail(),
    )
    .await;
    assert_eq!(fired, 2, "`b` fired on its second request");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_is_refused_while_the_first_keeps_serving() {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let config = base_config(dir.path(), "normal");
    let mut first = Daemon::start(dir.path(), "first", &config).await;
    let port = crate::support::free_port();
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .arg("serve")
        .arg("--config")
        .arg(&first.config_path)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env(crate::support::TOKEN_ENV, TOKEN)
        .env_remove("HOMEOSTAT_CONFIG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output();
    let second = tokio::time::timeout(WITHIN, second)
        .await
        .expect("the second daemon exits by itself")
        .expect("run the second daemon");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    let lock = dir.path().join("homeostat.db.lock");
    assert!(
        stderr.contains(&format!("pid {}", first.pid()))
            && stderr.contains(&lock.display().to_string()),
        "names the holder and the lock file: {stderr}"
    );
    // The first still serves and takes events.
    let (status, body) = post_json(&first, "/api/v1/hooks/alertmanager", alert("Down", "i1")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");

    // Reading the store is not blocked; deleting from it is.
    let retention = |apply: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"));
        command
            .arg("retention")
            .arg("--config")
            .arg(&first.config_path)
            .env_remove("HOMEOSTAT_CONFIG")
            .current_dir(dir.path());
        if apply {
            command.arg("--apply");
        }
        command.output()
    };
    let read = retention(false).await.expect("run retention");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let refused = retention(true).await.expect("run retention --apply");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");

    // A lock left by a killed daemon does not block the next one.
    first.kill_9();
    assert!(lock.exists());
    let restarted = Daemon::start(dir.path(), "restarted", &config).await;
    let events = restarted.get_json("/api/v1/events?limit=10").await;
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
}
