//! The command line as a person on another host uses it: every command against a daemon on a port
//! of its own, with only `HOMEOSTAT_SERVER` and `HOMEOSTAT_TOKEN` in the environment (no config,
//! run from an empty directory), each output format parsed back.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{base_config, serve, wait_for, Daemon, TOKEN};

const WITHIN: Duration = Duration::from_secs(20);

/// The read-only token, and the variable the daemon reads it from.
const READER: &str = "homeostat-cli-reader-0123456789abcdef";
const READER_ENV: &str = "HOMEOSTAT_TEST_READER";

fn config(dir: &Path) -> String {
    let head = base_config(dir, "normal");
    format!(
        "{head}  - {{name: reader, scopes: [read], token: {{env: {READER_ENV}}}}}
rules:
  - name: restart-cli
    match: ['alertname=\"CliDown\"']
    target: \"{{{{ labels.instance }}}}\"
    guards: {{cooldown_secs: 600, max_runs: {{count: 5, window_secs: 3600}}}}
    steps:
      - {{name: restart, action: log, with: {{message: \"restart {{{{ labels.instance }}}}\"}}}}
runbooks:
  - name: gated
    description: a fix that waits for a person
    params:
      tag: {{type: string, required: true}}
    steps:
      - {{name: prepare, action: log, with: {{message: \"prepare {{{{ params.tag }}}}\"}}}}
      - name: ok
        approval: {{approvers: [test], message: \"apply {{{{ params.tag }}}}?\"}}
      - {{name: apply, action: log, with: {{message: \"applied {{{{ params.tag }}}}\"}}}}
"
    )
}

/// What one CLI run gave.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self, what: &str) -> String {
        assert_eq!(self.code, 0, "`{what}` failed:\n{}", self.stderr);
        self.stdout
    }
}

/// `homeostat ARGS` from an empty directory with only `env` in its environment.
async fn run(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    let output = tokio::time::timeout(
        WITHIN,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`homeostat {}` did not end", args.join(" ")))
    .expect("the homeostat binary runs");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CLI as a user on another host sets it up: the daemon's address and a token, nothing else.
struct User<'a> {
    cwd: &'a Path,
    server: String,
}

impl User<'_> {
    async fn run(&self, args: &[&str]) -> Out {
        run(
            self.cwd,
            &[
                ("HOMEOSTAT_SERVER", self.server.as_str()),
                ("HOMEOSTAT_TOKEN", TOKEN),
            ],
            args,
        )
        .await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.run(&all).await.ok(&all.join(" "));
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("`{}` is not JSON ({error}):\n{text}", all.join(" ")))
    }

    /// `-o yaml`, parsed back; it must say what `-o json` says.
    async fn yaml(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "yaml"]);
        let text = self.run(&all).await.ok(&all.join(" "));
        serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|error| panic!("`{}` is not YAML ({error}):\n{text}", all.join(" ")))
    }

    /// A table's header line split into its column names.
    async fn headers(&self, args: &[&str]) -> (Vec<String>, String) {
        let text = self.run(args).await.ok(&args.join(" "));
        let header = text.lines().next().unwrap_or_default();
        let names = header
            .split("  ")
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        (names, text)
    }
}

/// The daemon the CLI talks to, with this file's config and the read-only token's secret.
async fn start(dir: &Path, name: &str) -> Daemon {
    Daemon::start_with_env(dir, name, &config(dir), &[(READER_ENV, READER)]).await
}

fn names(headers: &[&str]) -> Vec<String> {
    headers.iter().map(|h| h.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_with_only_a_server_and_a_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), "cli").await;
    let empty = tempfile::tempdir().expect("an empty working directory");
    let user = User {
        cwd: empty.path(),
        server: daemon.url(""),
    };

    // An alert the rule acts on, with a label long enough to wrap any table.
    let long = "x".repeat(200);
    let response = daemon
        .client()
        .post(daemon.url("/api/v1/events"))
        .json(&json!([{"labels": {"alertname": "CliDown", "instance": "api-1", "service": "cli", "note": long}}]))
        .send()
        .await
        .expect("the daemon answers");
    assert!(response.status().is_success());
    wait_for(
        "the rule's run to end",
        WITHIN,
        || async {
            let runs = daemon.get_json("/api/v1/runs").await;
            (runs["runs"][0]["status"] == "succeeded").then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;

    // events: table, wide, json, yaml, show.
    let (headers, table) = user.headers(&["events"]).await;
    assert_eq!(
        headers,
        names(&["ID", "RECEIVED", "SOURCE", "STATUS", "KIND", "LABELS"])
    );
    assert!(table.contains(&long), "piped, nothing is cut:\n{table}");
    let narrow = run(
        empty.path(),
        &[
            ("HOMEOSTAT_SERVER", user.server.as_str()),
            ("HOMEOSTAT_TOKEN", TOKEN),
            ("COLUMNS", "100"),
        ],
        &["events"],
    )
    .await
    .ok("events with COLUMNS=100");
    for line in narrow.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(narrow.contains('…'), "{narrow}");
    let (headers, wide) = user.headers(&["events", "-o", "wide"]).await;
    assert_eq!(
        headers,
        names(&["SEQ", "ID", "RECEIVED", "SOURCE", "STATUS", "KIND", "LABELS", "BY", "VERDICT"])
    );
    assert!(wide.contains(&long) && !wide.contains('…'), "{wide}");
    let events = user.json(&["events"]).await;
    let event = events
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .find(|event| event["labels"]["alertname"] == "CliDown")
        })
        .unwrap_or_else(|| panic!("no CliDown event in {events:#}"))
        .clone();
    let event_id = event["id"].as_str().expect("an id").to_string();
    assert_eq!(user.yaml(&["events"]).await, events);
    assert_eq!(
        user.json(&["events", "--json"]).await,
        events,
        "--json stays an alias"
    );
    let shown = user
        .run(&["events", "show", &event_id])
        .await
        .ok("events show");
    for expected in [
        event_id.as_str(),
        "alertname=CliDown",
        "journal (UTC)",
        "restart-cli",
    ] {
        assert!(shown.contains(expected), "no `{expected}` in:\n{shown}");
    }
    let shown = user.json(&["events", "show", &event_id]).await;
    assert_eq!(shown["event"]["id"], event_id.as_str());
    assert_eq!(user.yaml(&["events", "show", &event_id]).await, shown);

    // rules: the guards the run armed.
    let (headers, table) = user.headers(&["rules"]).await;
    assert_eq!(
        headers,
        names(&[
            "RULE",
            "RUNBOOK",
            "MODE",
            "COOLDOWNS",
            "RATE",
            "RUNNING",
            "DISABLED"
        ])
    );
    assert!(
        table.contains("restart-cli") && table.contains("1/5 in 3600s"),
        "{table}"
    );
    let rules = user.json(&["rules", "list"]).await;
    assert_eq!(rules[0]["name"], "restart-cli");
    assert_eq!(rules[0]["state"]["cooldowns"][0]["target"], "api-1");
    assert_eq!(rules[0]["state"]["rate"]["count"], 1);
    assert_eq!(user.yaml(&["rules"]).await, rules);
    let shown = user
        .run(&["rules", "show", "restart-cli"])
        .await
        .ok("rules show");
    assert!(shown.contains("until (UTC): api-1"), "{shown}");
    let shown = user.json(&["rules", "show", "restart-cli"]).await;
    assert_eq!(shown["guards"]["cooldown_secs"], 600);
    let (headers, _) = user.headers(&["rules", "-o", "wide"]).await;
    assert!(headers.contains(&"LOCKS".to_string()), "{headers:?}");
    let missing = user.run(&["rules", "show", "nope"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("known rules: `restart-cli`"),
        "{}",
        missing.stderr
    );
    assert_eq!(user.json(&["rules", "disabled"]).await, json!([]));

    // runs: the rule's run, through the API.
    let runs = user.json(&["runs"]).await;
    let run_id = runs[0]["id"].as_str().expect("a run id").to_string();
    assert_eq!(runs[0]["rule"], "restart-cli");
    assert_eq!(user.yaml(&["runs", "list"]).await, runs);
    let (headers, _) = user.headers(&["runs"]).await;
    assert_eq!(headers[0], "ID");
    let shown = user.run(&["runs", "show", &run_id]).await.ok("runs show");
    assert!(
        shown.contains("rule       restart-cli") && shown.contains("target     api-1"),
        "{shown}"
    );
    let shown = user.yaml(&["runs", "show", &run_id]).await;
    assert_eq!(shown["run"]["id"], run_id.as_str());

    // incidents, silences, SLOs and detectors.
    let incidents = user.json(&["incidents"]).await;
    let incident = incidents[0]["id"].as_i64().expect("an incident");
    let number = incident.to_string();
    assert_eq!(user.yaml(&["incidents", "list"]).await, incidents);
    let shown = user.yaml(&["incidents", "show", &number]).await;
    assert_eq!(shown["incident"]["id"], incident);
    let (headers, _) = user.headers(&["incidents", "-o", "wide"]).await;
    assert!(headers.contains(&"FIRING".to_string()), "{headers:?}");
    let added = user
        .run(&["silence", "add", "service=\"other\"", "--comment", "cli"])
        .await
        .ok("silence add");
    let silences = user.json(&["silence", "list"]).await;
    assert_eq!(silences[0]["id"], added.trim());
    assert_eq!(user.yaml(&["silence", "list"]).await, silences);
    user.run(&["silence", "expire", added.trim()])
        .await
        .ok("silence expire");
    assert_eq!(user.json(&["slo", "status"]).await, json!([]));
    assert_eq!(user.json(&["detectors", "status"]).await, json!([]));

    // runbooks: listed, shown, run by hand for the incident, approved from the list of approvals.
    let runbooks = user.json(&["runbook", "list"]).await;
    assert_eq!(runbooks[0]["name"], "gated");
    let table = user.run(&["runbook", "list"]).await.ok("runbook list");
    assert!(table.contains("tag: string (required)"), "{table}");
    let shown = user
        .run(&["runbook", "show", "gated"])
        .await
        .ok("runbook show");
    assert!(shown.contains("2. ok  approval by test"), "{shown}");
    let started = user
        .run(&[
            "runbook",
            "run",
            "gated",
            "-p",
            "tag=v7",
            "--incident",
            &number,
        ])
        .await
        .ok("runbook run --incident");
    let gated = started.trim().to_string();
    let approvals = wait_for(
        "the approval to be listed",
        WITHIN,
        || async {
            let listed = user.json(&["approvals"]).await;
            (listed.as_array().is_some_and(|listed| !listed.is_empty())).then_some(listed)
        },
        || daemon.stderr_tail(),
    )
    .await;
    assert_eq!(approvals[0]["run_id"], gated.as_str());
    assert_eq!(approvals[0]["message"], "apply v7?");
    assert_eq!(approvals[0]["then"], json!(["apply (log)"]));
    assert_eq!(approvals[0]["incident"], incident);
    let (headers, table) = user.headers(&["approvals"]).await;
    assert_eq!(
        headers,
        names(&[
            "RUN",
            "RUNBOOK",
            "TARGET",
            "STEP",
            "DEADLINE (UTC)",
            "MESSAGE",
            "THEN RUNS"
        ])
    );
    assert!(table.contains(&gated), "{table}");
    // The reader may look, and may not approve: it is not listed as an approver's work.
    let reader_env = [
        ("HOMEOSTAT_SERVER", user.server.as_str()),
        ("HOMEOSTAT_TOKEN", READER),
    ];
    let as_reader = run(empty.path(), &reader_env, &["approvals", "-o", "json"]).await;
    assert_eq!(as_reader.code, 0, "{}", as_reader.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&as_reader.stdout).ok(),
        Some(json!([]))
    );
    let refused = run(empty.path(), &reader_env, &["approve", &gated]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("lacks the `write` scope"),
        "{}",
        refused.stderr
    );
    user.run(&["approve", &gated]).await.ok("approve");
    wait_for(
        "the run by hand to succeed",
        WITHIN,
        || async {
            let run = daemon.get_json(&format!("/api/v1/runs/{gated}")).await;
            (run["run"]["status"] == "succeeded").then_some(())
        },
        || daemon.stderr_tail(),
    )
    .await;
    let shown = user.json(&["incidents", "show", &number]).await;
    let timeline = shown["timeline"].to_string();
    assert!(timeline.contains("started by `test`"), "{timeline}");
    let draft = user.run(&["postmortem", &number]).await.ok("postmortem");
    assert!(
        draft.contains("test ran runbook `gated` by hand (succeeded)"),
        "{draft}"
    );
    let unknown = user
        .run(&[
            "runbook",
            "run",
            "gated",
            "-p",
            "tag=x",
            "--incident",
            "999",
        ])
        .await;
    assert_eq!(unknown.code, 1, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no incident has the number `999`"),
        "{}",
        unknown.stderr
    );

    // Global flags anywhere, and no environment at all but the flags.
    let flags = ["--server", user.server.as_str(), "--token", TOKEN];
    let mut before = flags.to_vec();
    before.extend(["runs", "show", run_id.as_str(), "-o", "json"]);
    let mut after = vec!["runs", "-o", "json", "show", run_id.as_str()];
    after.extend(flags);
    for args in [before, after] {
        let out = run(empty.path(), &[], &args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let shown: Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(shown["run"]["id"], run_id.as_str());
    }
    let token_file = empty.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token file");
    let token_file = token_file.display().to_string();
    let out = run(
        empty.path(),
        &[("HOMEOSTAT_SERVER", user.server.as_str())],
        &["--token-file", &token_file, "rules", "disabled"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Reading the store directly only when asked, with --store: no daemon needed.
    let database = dir.path().join("homeostat.db").display().to_string();
    let local = run(
        empty.path(),
        &[],
        &["runs", "--store", &database, "-o", "json"],
    )
    .await;
    assert_eq!(local.code, 0, "{}", local.stderr);
    let local: Value = serde_json::from_str(&local.stdout).expect("JSON");
    assert!(
        local
            .as_array()
            .is_some_and(|runs| runs.iter().any(|run| run["id"] == run_id.as_str())),
        "{local:#}"
    );

    // Exit codes: refused (1), error (2), usage (64).
    let missing = user.run(&["events", "show", "nope"]).await;
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    let refused = run(empty.path(), &reader_env, &["incidents", "ack", &number]).await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("lacks the `write` scope") && refused.stderr.contains("--token"),
        "{}",
        refused.stderr
    );
    let nobody = run(
        empty.path(),
        &[("HOMEOSTAT_SERVER", user.server.as_str())],
        &["rules"],
    )
    .await;
    assert_eq!(nobody.code, 2, "{}", nobody.stderr);
    assert!(
        nobody.stderr.contains("HOMEOSTAT_TOKEN"),
        "{}",
        nobody.stderr
    );
    let unreachable = run(
        empty.path(),
        &[("HOMEOSTAT_TOKEN", TOKEN)],
        &["incidents", "--server", "http://127.0.0.1:1"],
    )
    .await;
    assert_eq!(unreachable.code, 2, "{}", unreachable.stderr);
    assert!(
        unreachable.stderr.contains("`http://127.0.0.1:1`")
            && unreachable.stderr.contains("--server"),
        "{}",
        unreachable.stderr
    );
    let usage = user.run(&["runs", "--bogus"]).await;
    assert_eq!(usage.code, 64, "{}", usage.stderr);
    let usage = user.run(&["events", "-o", "xml"]).await;
    assert_eq!(usage.code, 64, "{}", usage.stderr);

    // Reload: the daemon either reloads or is too old to; never a silent success.
    let reload = user.run(&["reload"]).await;
    assert!(
        reload.code == 0 || reload.stderr.contains("older than this CLI"),
        "{}",
        reload.stderr
    );
}

/// A page of the API holds at most 1,000 items: `--limit` past that follows the `next` cursors,
/// newest first, with nothing repeated or skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_past_one_page_follow_the_cursors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = start(dir.path(), "cli-pages").await;
    let empty = tempfile::tempdir().expect("an empty working directory");
    let user = User {
        cwd: empty.path(),
        server: daemon.url(""),
    };
    for batch in 0..3 {
        let events: Vec<Value> = (0..420)
            .map(|index| json!({"labels": {"alertname": "Paged", "service": "pages", "n": format!("{batch}-{index}")}}))
            .collect();
        let response = daemon
            .client()
            .post(daemon.url("/api/v1/events"))
            .json(&events)
            .send()
            .await
            .expect("the daemon answers");
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }
    let seqs = |events: &Value| -> Vec<i64> {
        events
            .as_array()
            .expect("a list")
            .iter()
            .map(|event| event["seq"].as_i64().expect("a seq"))
            .collect()
    };
    let all = seqs(&user.json(&["events", "--limit", "5000"]).await);
    assert_eq!(all.len(), 1260, "every event, over two pages");
    assert!(
        all.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first, none repeated"
    );
    let some = seqs(&user.json(&["events", "--limit", "1100"]).await);
    assert_eq!(some, all[..1100], "the first 1,100 of them");
    let runs_or_incidents = user.json(&["incidents", "--limit", "1500"]).await;
    assert_eq!(
        runs_or_incidents.as_array().map(Vec::len),
        Some(1),
        "one incident: one service"
    );
    let refused = user.run(&["events", "--limit", "0"]).await;
    assert_eq!(refused.code, 64, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--limit") && refused.stderr.contains("at least 1"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn reload_names_a_daemon_too_old_to_reload() {
    let empty = tempfile::tempdir().expect("tempdir");
    let (port, server) = serve(
        axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "404 page not found") }),
    )
    .await;
    let server_url = format!("http://127.0.0.1:{port}");
    let out = run(
        empty.path(),
        &[
            ("HOMEOSTAT_SERVER", server_url.as_str()),
            ("HOMEOSTAT_TOKEN", TOKEN),
        ],
        &["reload"],
    )
    .await;
    server.abort();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("older than this CLI") && out.stderr.contains(&server_url),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn completions_and_man_pages_are_generated_from_the_commands() {
    let empty = tempfile::tempdir().expect("tempdir");
    for (shell, marker) in [
        ("bash", "_homeostat()"),
        ("zsh", "#compdef homeostat"),
        ("fish", "complete -c homeostat"),
    ] {
        let script = run(empty.path(), &[], &["completion", shell])
            .await
            .ok(shell);
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        assert!(
            script.contains("approvals"),
            "{shell} completes the commands"
        );
    }
    let bad = run(empty.path(), &[], &["completion", "tcsh"]).await;
    assert_eq!(bad.code, 64, "{}", bad.stderr);

    let dir = empty.path().join("man");
    let dir_arg = dir.display().to_string();
    run(empty.path(), &[], &["man", "--dir", &dir_arg])
        .await
        .ok("man");
    for page in [
        "homeostat.1",
        "homeostat-runs.1",
        "homeostat-runs-show.1",
        "homeostat-rules-list.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page))
            .unwrap_or_else(|error| panic!("{page}: {error}"));
        assert!(text.contains(".TH"), "{page} is not a man page:\n{text}");
    }
    let runs = std::fs::read_to_string(dir.join("homeostat-runs.1")).expect("the runs page");
    assert!(
        runs.contains("\\-\\-output") || runs.contains("output"),
        "{runs}"
    );
    assert!(
        !dir.join("homeostat-demo-service.1").exists(),
        "hidden commands get no page"
    );
}
