//! The README's quick start works as written: its config passes `homeostat check` with the
//! tokens made as step 2 says, from another working directory (its paths are the config file's),
//! and it is the safe start it claims (dry run, a `log` step, an operator token not inline).

use std::process::Command;

const README: &str = include_str!("../../README.md");

/// The first fenced YAML block after `## Quick start`, without the list's indentation.
fn quick_start_config() -> String {
    let section = README
        .split_once("## Quick start")
        .expect("the README has a quick start")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("a YAML block in the quick start")
        .1
        .split_once("```")
        .expect("the block ends")
        .0;
    let indent = block
        .lines()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .unwrap_or(0);
    block
        .lines()
        .map(|line| line.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_quick_start_config_is_safe_and_passes_check() {
    let text = quick_start_config();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    assert_eq!(
        config["dry_run"],
        serde_yaml_ng::Value::Bool(true),
        "{text}"
    );
    let tokens = config["api_tokens"].as_sequence().expect("api_tokens");
    assert!(
        tokens.iter().any(|token| token["scopes"]
            .as_sequence()
            .is_some_and(|scopes| scopes.iter().any(|scope| scope == "write"))
            && token["token"]["env"] == "HOMEOSTAT_TOKEN"),
        "an operator token the CLI can use: {text}"
    );
    let actions: Vec<&str> = config["rules"][0]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .filter_map(|step| step["action"].as_str())
        .collect();
    assert_eq!(actions.first(), Some(&"log"), "{text}");

    // Step 2, in the config's folder; `check` runs from another one.
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("etc");
    std::fs::create_dir_all(config_dir.join("secrets")).unwrap();
    std::fs::write(config_dir.join("homeostat.yaml"), &text).unwrap();
    std::fs::write(
        config_dir.join("secrets/ingest-token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let check = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_homeostat"));
        command
            .current_dir(dir.path())
            .args(["check", "etc/homeostat.yaml"])
            .env_remove("HOMEOSTAT_CONFIG");
        match token {
            Some(token) => command.env("HOMEOSTAT_TOKEN", token),
            None => command.env_remove("HOMEOSTAT_TOKEN"),
        };
        let output = command.output().expect("runs homeostat");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (code, stderr) = check(Some("fedcba9876543210fedcba9876543210"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("ok: 1 rule"), "{stderr}");
    // Without the operator token exported, check says which one is missing.
    let (code, stderr) = check(None);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("HOMEOSTAT_TOKEN"), "{stderr}");
}
