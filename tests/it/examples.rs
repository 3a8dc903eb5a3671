//! The configs under `examples/` stay valid: `homeostat check` accepts them with their secrets set,
//! and refuses them with a precise error when one is missing.

#[test]
fn example_config_passes_check() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args([
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/homeostat.yaml"),
        ])
        .env("HOMEOSTAT_INGEST_TOKEN", "a")
        .env("HOMEOSTAT_READ_TOKEN", "b")
        .env("HOMEOSTAT_DEPLOY_WEBHOOK_SECRET", "c")
        .env(
            "HOMEOSTAT_SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/x",
        )
        .env("HOMEOSTAT_PAGERDUTY_ROUTING_KEY", "d")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("ok: 1 rule, 2 sources, 2 notifiers, 2 api tokens"),
        "{stderr}"
    );
}

#[test]
fn a_missing_secret_is_reported_with_file_line_and_field_and_exits_64() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args([
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/homeostat.yaml"),
        ])
        .env("HOMEOSTAT_INGEST_TOKEN", "a")
        .env("HOMEOSTAT_READ_TOKEN", "b")
        .env("HOMEOSTAT_DEPLOY_WEBHOOK_SECRET", "c")
        .env(
            "HOMEOSTAT_SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/x",
        )
        .env_remove("HOMEOSTAT_PAGERDUTY_ROUTING_KEY")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("examples/homeostat.yaml:47: notifiers[1].routing_key: secret env `HOMEOSTAT_PAGERDUTY_ROUTING_KEY` is not set"), "{stderr}");
    assert!(
        !stderr.contains("hooks.slack.com"),
        "secrets are never printed: {stderr}"
    );
}

#[test]
fn check_reports_every_error_at_once_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "rules:\n  - name: r\n    match: ['severity=~\"(\"']\n    steps:\n      - name: s\n        action: reboot\n",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("bad.yaml:3: rules[0].match[0]: matcher `severity=~\"(\"` has an invalid regular expression"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:6: rules[0].steps[0].action: unknown action `reboot`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: use one of exec, http_request, notify"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: the config is invalid (2 errors)"),
        "{stderr}"
    );
}
