//! deploy/systemd/homeostat.service is a unit systemd accepts (`systemd-analyze verify`, which
//! warns about unknown keys and bad values), sandboxed as its comments say
//! (`systemd-analyze security`), and runs the binary as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/systemd/homeostat.service"
);

/// `systemd-analyze` on the PATH; a missing one fails the test, as CI has systemd's package.
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`systemd-analyze` is not on the PATH: apt-get install systemd"))
}

/// The unit with the installed binary's path replaced by the one cargo built, which verify
/// wants to exist, in a folder of its own under the unit's own file name.
fn unit_in(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(UNIT).expect("the unit file");
    assert!(text.contains("/usr/local/bin/homeostat "), "{text}");
    let text = text.replace("/usr/local/bin/homeostat", env!("CARGO_BIN_EXE_homeostat"));
    let path = dir.join("homeostat.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path());
    let output = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("runs systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // Unknown keys and values systemd cannot parse are warnings, not failures: none may appear.
    let unit_warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("homeostat.service"))
        .collect();
    assert!(unit_warnings.is_empty(), "{stderr}");
}

#[test]
fn the_unit_is_sandboxed() {
    let text = std::fs::read_to_string(UNIT).unwrap();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=homeostat",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(text.contains(setting), "`{}` is missing", setting.trim());
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_in(dir.path());
    // systemd rates a unit's exposure from 0 (locked down) to 10; 2.0 and below is "OK".
    let output = Command::new(systemd_analyze())
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("runs systemd-analyze");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Overall exposure level"), "{stdout}");
}
