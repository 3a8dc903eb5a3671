//! Relative paths in the config are relative to the config file's directory, whatever the
//! working directory: the store, secret files; and an error about a file names the absolute path
//! it tried.

use std::process::Command;

use super::support::{Daemon, TOKEN};

/// The daemon starts from the test's folder with its config in `etc/`: the store is created
/// beside the config, and the token read from the file beside it authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_secret_files_are_found_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("secrets")).unwrap();
    std::fs::write(etc.join("secrets/token"), format!("{TOKEN}\n")).unwrap();
    let config = "store: {path: homeostat.db, synchronous: normal}\n\
                  api_tokens:\n  - {name: test, scopes: [write], token: {file: secrets/token}}\n";
    let daemon = Daemon::start(dir.path(), "etc/homeostat", config).await;
    assert!(
        etc.join("homeostat.db").is_file(),
        "{}",
        daemon.stderr_tail()
    );
    assert!(!dir.path().join("homeostat.db").exists());
    // The client sends TOKEN: the file's token is the daemon's.
    let events = daemon.get_json("/api/v1/events").await;
    assert!(events.is_object() || events.is_array(), "{events}");
}

#[test]
fn a_missing_secret_file_is_reported_with_the_absolute_path_tried() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("homeostat.yaml"),
        "api_tokens:\n  - {name: test, scopes: [read], token: {file: secrets/missing}}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .current_dir(dir.path())
        .args(["check", "etc/homeostat.yaml"])
        .output()
        .expect("runs homeostat");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    let tried = std::fs::canonicalize(&etc).unwrap().join("secrets/missing");
    let tried_as_given = etc.join("secrets/missing");
    assert!(
        stderr.contains(&format!("`{}`", tried.display()))
            || stderr.contains(&format!("`{}`", tried_as_given.display())),
        "the absolute path tried: {stderr}"
    );
    assert!(
        stderr.contains("etc/homeostat.yaml:2: api_tokens[0].token"),
        "{stderr}"
    );
}
