//! The configs under `examples/` stay valid: `homeostat check` accepts them with their secrets set,
//! and refuses them with a precise error when one is missing.

use std::process::Output;

const SECRETS: &[(&str, &str)] = &[
    ("HOMEOSTAT_INGEST_TOKEN", "a"),
    ("HOMEOSTAT_READ_TOKEN", "b"),
    ("HOMEOSTAT_DEPLOY_WEBHOOK_SECRET", "c"),
    (
        "HOMEOSTAT_SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/x",
    ),
    ("HOMEOSTAT_PAGERDUTY_ROUTING_KEY", "d"),
];

/// Runs `homeostat check` on the example config with every secret set except `unset`.
fn check_example(unset: Option<&str>) -> (Output, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"));
    command.args([
        "check",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/homeostat.yaml"),
    ]);
    for (name, value) in SECRETS {
        if Some(*name) == unset {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
    let output = command.output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output, stderr)
}

#[test]
fn example_config_passes_check() {
    let (output, stderr) = check_example(None);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("ok: 1 rule, 1 runbook, 2 sources, 2 notifiers, 2 api tokens"),
        "{stderr}"
    );
}

#[test]
fn a_missing_secret_is_reported_with_file_line_and_field_and_exits_64() {
    let (output, stderr) = check_example(Some("HOMEOSTAT_PAGERDUTY_ROUTING_KEY"));
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(
            "examples/homeostat.yaml:47: notifiers[1].routing_key: secret env `HOMEOSTAT_PAGERDUTY_ROUTING_KEY` is not set"
        ),
        "{stderr}"
    );
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

#[test]
fn exit_codes_follow_the_convention() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
            .args(args)
            .output()
            .expect("runs")
            .status
            .code()
    };
    assert_eq!(run(&["frobnicate"]), Some(64), "a usage error");
    assert_eq!(run(&["check", "--no-such-flag"]), Some(64), "a usage error");
    assert_eq!(run(&["--help"]), Some(0));
    assert_eq!(run(&["--version"]), Some(0));
    assert_eq!(
        run(&["check", "/nonexistent/homeostat.yaml"]),
        Some(2),
        "an unreadable file is an error, not a check"
    );
}
