//! `homeostat demo`: a self-contained game day on embedded defaults.
//!
//! It starts a small HTTP service it owns (a child process of this same binary), watches it with an
//! `http_probe`, injects a fault, and lets a rule restart the service through a real `exec` action.
//! It then verifies the probe passes again and prints the timeline with time to detect and recover.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use homeostat_core::clock::{Clock, SystemClock};
use homeostat_core::{EventKind, Status};
use homeostat_store::{steps_from_journal, EventQuery, IncidentQuery, RunQuery, RunStatus, Store};

use super::{config, EXIT_ERROR, EXIT_FAILED};

const SERVICE_LIFETIME: Duration = Duration::from_secs(600);

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `homeostat demo-service`: answers `/healthz` with 200 until `POST /fault`, then with 500.
pub async fn service(port: u16) -> u8 {
    let fault = Arc::new(AtomicBool::new(false));
    let health = {
        let fault = fault.clone();
        move || async move {
            if fault.load(Ordering::Relaxed) {
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "fault injected\n",
                )
            } else {
                (axum::http::StatusCode::OK, "ok\n")
            }
        }
    };
    let inject = {
        let fault = fault.clone();
        move || async move {
            fault.store(true, Ordering::Relaxed);
            "fault injected: /healthz now fails until the service restarts\n"
        }
    };
    let router = Router::new()
        .route("/healthz", get(health))
        .route("/fault", post(inject));
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: demo service cannot listen on port {port}: {error}");
            return EXIT_ERROR;
        }
    };
    // The service never outlives a forgotten demo by long.
    let lifetime = tokio::time::sleep(SERVICE_LIFETIME);
    tokio::select! {
        _ = axum::serve(listener, router) => {}
        _ = lifetime => {}
    }
    0
}

fn spawn_service(dir: &Path, port: u16) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("service.log"))?;
    let child = std::process::Command::new(exe)
        .args(["demo-service", "--port", &port.to_string()])
        .stdin(std::process::Stdio::null())
        // Not the caller's pipes: an `exec` step waits for its output pipes to close.
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group, so the step's timeout cleanup cannot take the service down with it.
        .process_group(0)
        .spawn()?;
    std::fs::write(dir.join("service.pid"), child.id().to_string())?;
    std::fs::write(dir.join("service.port"), port.to_string())?;
    Ok(child.id())
}

fn kill_service(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("service.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    // Reap it if it is our child; otherwise init does.
    let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    Some(pid.as_raw())
}

async fn wait_healthy(port: u16, within: Duration) -> bool {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let attempts = (within.as_millis() / 50).max(1);
    for _ in 0..attempts {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `homeostat demo-restart`: the remediation. Stops the service and starts a fresh one.
pub async fn restart(dir: &Path) -> u8 {
    let port: u16 = match std::fs::read_to_string(dir.join("service.port"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        Some(port) => port,
        None => {
            eprintln!("error: no demo service state in `{}`", dir.display());
            return EXIT_ERROR;
        }
    };
    let old = kill_service(dir);
    // The port is free once the old process is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match spawn_service(dir, port) {
        Ok(pid) => {
            let healthy = wait_healthy(port, Duration::from_secs(5)).await;
            println!(
                "restarted the demo service: pid {} -> {pid}, healthy: {healthy}",
                old.unwrap_or(0)
            );
            if healthy {
                0
            } else {
                EXIT_FAILED
            }
        }
        Err(error) => {
            eprintln!("error: cannot start the demo service: {error}");
            EXIT_ERROR
        }
    }
}

fn demo_config(dir: &Path, service_port: u16, notify_port: u16) -> String {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("homeostat"));
    format!(
        r#"# Written by `homeostat demo`: the whole game day as config.
store:
  path: {db}
  synchronous: normal
incidents:
  # Time-driven work (verification deadlines) is checked every second.
  sweep_secs: 1
sources:
  - type: http_probe
    name: demo-service
    url: http://127.0.0.1:{service_port}/healthz
    interval_secs: 0.2
    timeout_secs: 1
    failure_threshold: 2
    success_threshold: 2
    labels: {{service: demo, severity: page}}
notifiers:
  - type: webhook
    name: oncall
    url: http://127.0.0.1:{notify_port}/notify
rules:
  - name: restart-demo-service
    description: Restart the demo service when its health probe fails.
    match: ['probe="demo-service"']
    target: "{{{{ labels.service }}}}"
    guards:
      cooldown_secs: 30
      max_runs: {{count: 3, window_secs: 600}}
    steps:
      - name: restart
        action: exec
        with:
          command: [{exe:?}, demo-restart, --dir, {dir:?}]
        timeout_secs: 20
      - name: tell-oncall
        action: notify
        with:
          notifier: oncall
          summary: "restarted {{{{ labels.service }}}} after: {{{{ annotations.summary }}}}"
          severity: warning
"#,
        db = dir.join("homeostat.db").display(),
        exe = exe.display().to_string(),
        dir = dir.display().to_string(),
    )
}

struct Line {
    at: DateTime<Utc>,
    /// Breaks ties within a millisecond (runs are stored to the millisecond, events more finely):
    /// the fault, then detection, the decision, steps, the run's end and the verification.
    stage: u8,
    text: String,
}

/// `ui`: serve the dashboard after the game day, on this address (empty: a free loopback port).
pub async fn run(timeout_secs: u64, keep: bool, ui: Option<String>) -> u8 {
    let dir = match tempfile::Builder::new().prefix("homeostat-demo-").tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("error: cannot create a working directory: {error}");
            return EXIT_ERROR;
        }
    };
    let code = game_day(dir.path(), timeout_secs, ui.as_deref()).await;
    kill_service(dir.path());
    if keep {
        let kept = dir.keep();
        eprintln!("kept the demo's files in {}", kept.display());
        eprintln!(
            "  see the runs: homeostat runs --store {}/homeostat.db",
            kept.display()
        );
    }
    code
}

async fn game_day(dir: &Path, timeout_secs: u64, ui: Option<&str>) -> u8 {
    let clock = Arc::new(SystemClock::default());
    let (service_port, notify_port) = match (free_port(), free_port()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            eprintln!("error: no free loopback port");
            return EXIT_ERROR;
        }
    };

    // A local receiver stands in for the on-call channel, so the notification step is real too.
    let notifications: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = {
        let notifications = notifications.clone();
        Router::new().route(
            "/notify",
            post(move |body: axum::body::Bytes| async move {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let summary = json
                    .get("summary")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string();
                notifications
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(summary);
                "ok"
            }),
        )
    };
    match tokio::net::TcpListener::bind(("127.0.0.1", notify_port)).await {
        Ok(listener) => {
            tokio::spawn(async move { axum::serve(listener, receiver).await });
        }
        Err(error) => {
            eprintln!("error: cannot start the notification receiver: {error}");
            return EXIT_ERROR;
        }
    }

    eprintln!("homeostat demo: a game day on this machine, nothing outside it is touched");
    if let Err(error) = spawn_service(dir, service_port) {
        eprintln!("error: cannot start the demo service: {error}");
        return EXIT_ERROR;
    }
    if !wait_healthy(service_port, Duration::from_secs(10)).await {
        eprintln!(
            "error: the demo service did not come up; see {}",
            dir.join("service.log").display()
        );
        return EXIT_ERROR;
    }
    eprintln!("  service up on 127.0.0.1:{service_port}, watched by an http_probe every 0.2s");

    let config_path = dir.join("homeostat.yaml");
    let mut text = demo_config(dir, service_port, notify_port);
    if ui.is_some() {
        match dashboard_token(dir) {
            Ok(tokens) => text.push_str(&tokens),
            Err(error) => {
                eprintln!("error: cannot write the dashboard's token: {error}");
                return EXIT_ERROR;
            }
        }
    }
    if let Err(error) = std::fs::write(&config_path, text) {
        eprintln!("error: cannot write the demo config: {error}");
        return EXIT_ERROR;
    }
    let compiled = match config::load_with(&config_path, false) {
        Ok(compiled) => compiled,
        Err(error) => return error.report(),
    };
    let engine = match homeostat_engine::start(compiled, clock.clone()).await {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: cannot start the engine: {error}");
            return EXIT_ERROR;
        }
    };
    let store = engine.handle.store().clone();
    // Let the probe see the healthy service a few times first.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let fault_at = clock.now();
    let injected = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{service_port}/fault"))
        .send()
        .await;
    if injected.is_err() {
        eprintln!("error: cannot inject the fault");
        engine.abort();
        return EXIT_ERROR;
    }
    eprintln!("  fault injected: the service's /healthz now answers 500; waiting for homeostat to notice and heal it");

    let deadline = clock.monotonic() + Duration::from_secs(timeout_secs);
    let outcome = loop {
        if let Some(outcome) = observe(&*store, fault_at).await {
            // Done when healed and the incident has recorded the fix, or when the run failed.
            if (outcome.recovered.is_some() && outcome.incident_settled) || outcome.run_failed {
                break Some(outcome);
            }
        }
        if clock.monotonic() > deadline {
            break observe(&*store, fault_at).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The notification is the last step; give its delivery a moment to be seen.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let serving = match ui {
        Some(listen) => Some((listen.to_string(), engine)),
        None => {
            engine.abort();
            None
        }
    };

    let Some(outcome) = outcome else {
        if let Some((_, engine)) = serving {
            engine.abort();
        }
        eprintln!("error: nothing was detected within {timeout_secs}s");
        return EXIT_FAILED;
    };
    let mut lines = vec![Line {
        at: fault_at,
        stage: 0,
        text: "fault injected: /healthz answers 500".into(),
    }];
    lines.extend(outcome.lines);
    lines.sort_by_key(|line| (line.at.timestamp_millis(), line.stage));
    println!("\ntimeline (seconds after the fault)");
    for line in &lines {
        // Whole milliseconds on both sides, as the journal stores some times to the millisecond.
        let offset = (line.at.timestamp_millis() - fault_at.timestamp_millis()) as f64 / 1000.0;
        println!("  {offset:>+8.3}s  {}", line.text);
    }
    for summary in notifications
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("  on-call channel received: {summary}");
    }
    let seconds =
        |at: Option<DateTime<Utc>>| at.map(|at| (at - fault_at).num_milliseconds() as f64 / 1000.0);
    println!();
    match seconds(outcome.detected) {
        Some(mttd) => println!("time to detect  (MTTD): {mttd:.3}s"),
        None => println!("time to detect  (MTTD): not detected"),
    }
    let code = match seconds(outcome.recovered) {
        Some(mttr) => {
            println!("time to recover (MTTR): {mttr:.3}s");
            println!("result: healed; the probe passes again after an automatic restart");
            0
        }
        None => {
            println!("time to recover (MTTR): not recovered within {timeout_secs}s");
            println!(
                "result: NOT healed; see `homeostat runs show` in the kept directory (--keep)"
            );
            EXIT_FAILED
        }
    };
    match serving {
        Some((listen, engine)) => {
            let served = serve_dashboard(dir, &listen, &engine).await;
            engine.shutdown().await;
            if served == 0 {
                code
            } else {
                served
            }
        }
        None => code,
    }
}

/// The `api_tokens` section of `--ui`: one `write` token, random, in a file only this user reads.
fn dashboard_token(dir: &Path) -> std::io::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join("dashboard-token");
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?
        .write_all(token.as_bytes())?;
    Ok(format!(
        "api_tokens:\n  - {{name: demo, scopes: [write], token: {{file: {path:?}}}}}\n",
        path = path.display().to_string()
    ))
}

/// Serves the API and the dashboard for the game day's engine until Ctrl-C.
async fn serve_dashboard(dir: &Path, listen: &str, engine: &homeostat_engine::Engine) -> u8 {
    let address = if listen.is_empty() {
        "127.0.0.1:0"
    } else {
        listen
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on `{address}`: {error}; try --listen 127.0.0.1:PORT");
            return EXIT_ERROR;
        }
    };
    let bound = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|_| address.to_string());
    let handle = &engine.handle;
    let compiled = handle.compiled();
    println!();
    println!("dashboard: http://{bound}/");
    println!(
        "  sign in with the token in {} (it is not printed: `cat` it)",
        dir.join("dashboard-token").display()
    );
    println!(
        "  the daemon goes on probing the service; Ctrl-C stops it and removes the demo's files"
    );
    let served = homeostat_api::server::serve(
        listener,
        homeostat_api::router(handle.clone()),
        homeostat_api::server::Limits::from_config(&compiled.config.server),
        handle.clock().clone(),
        handle.metrics().clone(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await;
    match served {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: the dashboard's server failed: {error}");
            EXIT_ERROR
        }
    }
}

struct Outcome {
    detected: Option<DateTime<Utc>>,
    recovered: Option<DateTime<Utc>>,
    run_failed: bool,
    /// The incident is resolved and knows its remediation mitigated it.
    incident_settled: bool,
    lines: Vec<Line>,
}

/// Reads the journal and turns it into the demo's timeline.
async fn observe(store: &dyn Store, fault_at: DateTime<Utc>) -> Option<Outcome> {
    let events = store
        .events(&EventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .ok()?;
    let mut lines = Vec::new();
    let mut detected = None;
    let mut recovered = None;
    for record in events.iter().filter(|record| {
        record.event.received_at >= fault_at && record.event.kind != EventKind::Command
    }) {
        let event = &record.event;
        let summary = event
            .annotations
            .get("summary")
            .cloned()
            .unwrap_or_default();
        match event.status {
            Status::Firing if detected.is_none() => {
                detected = Some(event.received_at);
                lines.push(Line {
                    at: event.received_at,
                    stage: 1,
                    text: format!("detected: {summary}"),
                });
            }
            Status::Resolved if detected.is_some() && recovered.is_none() => {
                recovered = Some(event.received_at);
                lines.push(Line {
                    at: event.received_at,
                    stage: 5,
                    text: format!("verified: {summary}"),
                });
            }
            _ => {}
        }
    }
    let mut run_failed = false;
    let runs = store
        .runs(&RunQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .ok()?;
    for run in runs.iter().filter(|run| run.started_at >= fault_at) {
        lines.push(Line {
            at: run.started_at,
            stage: 2,
            text: format!(
                "decided: rule `{}` runs on target `{}` (run {})",
                run.rule, run.target, run.id
            ),
        });
        let journal = store.journal_for_run(&run.id).await.ok()?;
        for step in steps_from_journal(&journal) {
            if let Some(finished) = step.finished_at {
                let took = (finished - step.started_at).num_milliseconds() as f64 / 1000.0;
                let detail = step
                    .output
                    .as_ref()
                    .and_then(|output| output.get("stdout"))
                    .and_then(|stdout| stdout.as_str())
                    .map(|stdout| stdout.trim().to_string())
                    .filter(|stdout| !stdout.is_empty())
                    .map(|stdout| format!(": {stdout}"))
                    .or_else(|| step.error.as_ref().map(|error| format!(": {error}")))
                    .unwrap_or_default();
                lines.push(Line {
                    at: finished,
                    stage: 3,
                    text: format!("step `{}` {} in {took:.3}s{detail}", step.step, step.status),
                });
            }
        }
        if let Some(finished) = run.finished_at {
            lines.push(Line {
                at: finished,
                stage: 4,
                text: format!("run {}", run.status.as_str()),
            });
            run_failed |= matches!(run.status, RunStatus::Failed | RunStatus::NeedsAttention);
        }
    }
    let mut incident_settled = false;
    let incidents = store
        .incidents(&IncidentQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .ok()?;
    for incident in incidents
        .iter()
        .filter(|incident| incident.opened_at >= fault_at)
    {
        lines.push(Line {
            at: incident.opened_at,
            stage: 1,
            text: format!(
                "incident {} opened: {} {}",
                incident.id, incident.title, incident.group_key
            ),
        });
        if let Some(at) = incident.mitigated_at {
            lines.push(Line {
                at,
                stage: 4,
                text: format!(
                    "incident {} mitigated: the remediation succeeded; verifying it resolves",
                    incident.id
                ),
            });
        }
        if let Some(at) = incident.resolved_at {
            lines.push(Line {
                at,
                stage: 6,
                text: format!(
                    "incident {} resolved: its alert cleared, the fix is verified",
                    incident.id
                ),
            });
        }
        incident_settled |= incident.resolved_at.is_some() && incident.mitigated_at.is_some();
    }
    Some(Outcome {
        detected,
        recovered,
        run_failed,
        incident_settled,
        lines,
    })
}
