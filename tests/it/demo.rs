//! The README's first command, `homeostat demo`, as a test: the game day must heal and say so.

#[test]
fn the_demo_heals_the_service_and_prints_its_timeline() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(["demo", "--timeout-secs", "60"])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for expected in [
        "detected: probe `demo-service` is failing",
        "incident 1 opened:",
        "step `restart` succeeded",
        "incident 1 mitigated:",
        "verified:",
        "incident 1 resolved:",
        "time to detect  (MTTD):",
        "time to recover (MTTR):",
        "result: healed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in\n{stdout}"
        );
    }
}
