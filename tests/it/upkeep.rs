//! The store's upkeep from the command line, beside a running daemon: `homeostat backup`,
//! `homeostat export` and `homeostat retention`.

use serde_json::{json, Value};

use crate::support::{base_config, Daemon};

async fn homeostat(args: &[&str], config: &std::path::Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run homeostat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_export_and_retention_work_beside_a_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = base_config(dir.path(), "normal");
    let daemon = Daemon::start(dir.path(), "daemon", &config).await;
    for index in 0..5 {
        let response = daemon
            .client()
            .post(daemon.url("/api/v1/events"))
            .json(&json!([{"labels": {"alertname": "Upkeep", "index": index.to_string()}}]))
            .send()
            .await
            .expect("post");
        assert!(response.status().is_success());
    }

    let copy = dir.path().join("copy.db");
    let output = homeostat(
        &["backup", copy.to_str().expect("utf-8")],
        &daemon.config_path,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("backed up the store"));
    let again = homeostat(
        &["backup", copy.to_str().expect("utf-8")],
        &daemon.config_path,
    )
    .await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The export: JSON lines, events before the journal entries made for them.
    let output = homeostat(&["export", "--since", "1h"], &daemon.config_path).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let events: Vec<&Value> = records
        .iter()
        .filter(|record| record["record"] == "event")
        .collect();
    assert_eq!(events.len(), 5, "{records:?}");
    assert_eq!(events[0]["labels"]["alertname"], "Upkeep");
    assert!(records
        .iter()
        .all(|record| record["record"] == "event" || record["record"] == "journal"));
    let future = homeostat(
        &["export", "--since", "2999-01-01T00:00:00Z"],
        &daemon.config_path,
    )
    .await;
    assert!(future.status.success());
    assert!(future.stdout.is_empty());
    let bad = homeostat(&["export", "--since", "yesterday"], &daemon.config_path).await;
    assert_eq!(bad.status.code(), Some(64), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));

    // Nothing is old enough to go; the report says what would.
    let output = homeostat(&["retention", "--json"], &daemon.config_path).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["events"], 0);
    let table = homeostat(&["retention"], &daemon.config_path).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("would delete") && text.contains("older than 30d"),
        "{text}"
    );
}
