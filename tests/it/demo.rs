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

/// `homeostat demo --ui`: after the game day its daemon stays up, and the dashboard it prints the
/// address of shows the incident and the run that healed it, to whoever signs in with the token
/// in the file it names; Ctrl-C stops it and removes the demo's files.
#[tokio::test]
async fn the_demo_with_ui_serves_the_incident_and_its_run_until_interrupted() {
    use tokio::io::AsyncBufReadExt;
    // Port 0: the daemon takes a free one and prints it, so no other test can take it first.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_homeostat"))
        .args(["demo", "--ui", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let token_file = tokio::time::timeout(std::time::Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(rest) = line.trim().strip_prefix("sign in with the token in ") {
                return rest.split(' ').next().map(std::path::PathBuf::from);
            }
        }
        None
    })
    .await
    .expect("the dashboard's address within 90 s")
    .unwrap_or_else(|| panic!("no sign-in line in\n{printed}"));
    assert!(printed.contains("result: healed"), "{printed}");
    let base = printed
        .lines()
        .find_map(|line| line.strip_prefix("dashboard: "))
        .expect("the dashboard's address")
        .trim_end_matches('/')
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let token = std::fs::read_to_string(&token_file).expect("the token file");
    assert!(!printed.contains(&token), "the token is not printed");

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = client
        .post(format!("{base}/login"))
        .form(&[("token", token.as_str()), ("next", "/incidents/1")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed.status(), reqwest::StatusCode::SEE_OTHER);
    let cookie = signed.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = client
        .get(format!("{base}/incidents/1"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("the incident page")
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"<span class="badge resolved">resolved</span>"#),
        "{page}"
    );
    assert!(page.contains("restart-demo-service"), "{page}");
    assert!(
        page.contains(r#"<span class="badge run-succeeded">succeeded</span>"#),
        "{page}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("it stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!token_file.exists(), "the demo's files are removed");
}
