//! `homeostat slo rules` on the example spec: the real `promtool` accepts the rules, and its unit
//! tests (tests/slo/checkout_test.yaml) see the page and ticket alerts fire when they should.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slo/checkout.yaml");
const PROMTOOL_TESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slo/checkout_test.yaml");

/// `promtool` on the PATH; a missing one fails the test, because CI installs it.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`promtool` is not on the PATH: apt-get install prometheus (.ci/run does)")
        })
}

fn homeostat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(args)
        .output()
        .expect("runs homeostat")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes the example's rules as `checkout.rules.yaml` into `dir`, where the unit tests name them.
fn generate_into(dir: &Path, period: &str) -> PathBuf {
    let rules = dir.join("checkout.rules.yaml");
    let out = rules.to_str().expect("utf-8 path");
    let output = homeostat(&["slo", "rules", SPEC, "--out", out, "--period", period]);
    assert!(output.status.success(), "{}", text(&output));
    rules
}

#[test]
fn promtool_accepts_the_rules_for_both_periods() {
    let promtool = promtool();
    for period in ["28d", "30d"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = generate_into(dir.path(), period);
        let output = Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(&rules)
            .output()
            .expect("runs promtool");
        assert!(output.status.success(), "{period}: {}", text(&output));
        // Two SLOs: 8 SLI and 7 metadata recordings each, 2 + 1 alerts.
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("SUCCESS: 33 rules found"),
            "{}",
            text(&output)
        );
    }
}

#[test]
fn promtool_unit_tests_see_the_page_and_ticket_alerts_fire_on_time() {
    let promtool = promtool();
    let dir = tempfile::tempdir().expect("tempdir");
    generate_into(dir.path(), "30d");
    let tests = dir.path().join("checkout_test.yaml");
    std::fs::copy(PROMTOOL_TESTS, &tests).expect("copies the unit tests");
    let output = Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(&tests)
        .output()
        .expect("runs promtool");
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn stdout_gets_the_rules_by_default() {
    let output = homeostat(&["slo", "rules", SPEC]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("- record: slo:sli_error:ratio_rate30d"),
        "{stdout}"
    );
    assert!(stdout.contains("> (14.4 * 0.001))"), "{stdout}");
}

#[test]
fn an_invalid_spec_is_reported_with_its_field_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = std::fs::read_to_string(SPEC)
        .expect("reads the example")
        .replace("objective: 99.9", "objective: 100.5");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, spec).expect("writes");
    let output = homeostat(&["slo", "rules", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert!(output.stdout.is_empty(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("slos[0].objective: 100.5 is not a percentage below 100"),
        "{stderr}"
    );
}

#[test]
fn an_unsupported_period_is_a_usage_error() {
    let output = homeostat(&["slo", "rules", SPEC, "--period", "7d"]);
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("period `7d` is not supported; use `28d` or `30d`"),
        "{stderr}"
    );
}

#[test]
fn an_openslo_file_gives_rules_promtool_accepts_with_its_own_period() {
    let promtool = promtool();
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/slo/checkout-openslo.yaml"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("openslo.rules.yaml");
    let out = rules.to_str().expect("utf-8 path");
    let output = homeostat(&["slo", "rules", spec, "--out", out]);
    assert!(output.status.success(), "{}", text(&output));
    let generated = std::fs::read_to_string(&rules).expect("the rules");
    assert!(
        generated.contains("slo:sli_error:ratio_rate30d"),
        "{generated}"
    );
    assert!(
        generated.contains("alert: RequestsAvailabilitySLO"),
        "{generated}"
    );
    let output = Command::new(&promtool)
        .args(["check", "rules", out])
        .output()
        .expect("runs promtool");
    assert!(output.status.success(), "{}", text(&output));
    // One SLO: 8 SLI and 7 metadata recordings, 2 alerts.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("SUCCESS: 17 rules found"),
        "{}",
        text(&output)
    );
    // Its time window is 30 days: asking for 28 is refused rather than silently overridden.
    let output = homeostat(&["slo", "rules", spec, "--period", "28d"]);
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("differs from the 30d time window"),
        "{}",
        text(&output)
    );
}

#[test]
fn custom_alert_windows_give_rules_promtool_accepts() {
    let promtool = promtool();
    let windows = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/slo/windows-7d.yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("seven-days.rules.yaml");
    let out = rules.to_str().expect("utf-8 path");
    let output = homeostat(&["slo", "rules", SPEC, "--windows", windows, "--out", out]);
    assert!(output.status.success(), "{}", text(&output));
    let generated = std::fs::read_to_string(&rules).expect("the rules");
    assert!(
        generated.contains("slo:sli_error:ratio_rate7d"),
        "{generated}"
    );
    assert!(generated.contains("(13.44 * 0.001)"), "{generated}");
    let output = Command::new(&promtool)
        .args(["check", "rules", out])
        .output()
        .expect("runs promtool");
    assert!(output.status.success(), "{}", text(&output));
}
