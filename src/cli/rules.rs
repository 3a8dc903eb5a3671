//! `homeostat rules disabled|enable`, through the daemon's API: the rules loop detection turned off
//! for a target, and turning one back on, with the token's name as who did it.

use std::io::IsTerminal;
use std::path::Path;

use serde_json::{json, Value};

use super::remote::{self, Remote};
use super::runbook::segment;
use super::show::{emit, print_json, render_table};

/// `homeostat rules disabled`: a table of rule and target, by rule then target.
pub async fn disabled(config_path: &Path, args: &remote::Args, json: bool) -> u8 {
    let remote = match Remote::new(args, config_path) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let answer = match remote.get("/api/v1/rules/disabled").await {
        Ok(answer) => answer,
        Err(failure) => return failure.report(),
    };
    let disabled = answer["disabled"].as_array().cloned().unwrap_or_default();
    if json {
        print_json(&disabled);
        return 0;
    }
    if disabled.is_empty() {
        eprintln!("no rule is disabled");
        return 0;
    }
    let rows = disabled
        .iter()
        .map(|pair| vec![text(&pair["rule"]), text(&pair["target"])])
        .collect();
    emit(&render_table(
        &["RULE", "TARGET"],
        rows,
        std::io::stdout().is_terminal(),
    ));
    0
}

/// `homeostat rules enable RULE --target TARGET`.
pub async fn enable(config_path: &Path, args: &remote::Args, rule: &str, target: &str) -> u8 {
    let remote = match Remote::new(args, config_path) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let path = format!("/api/v1/rules/{}/enable", segment(rule));
    match remote.post(&path, &json!({ "target": target })).await {
        Ok(answer) => {
            emit(&format!(
                "rule {} enabled for {}\n",
                text(&answer["rule"]),
                text(&answer["target"])
            ));
            0
        }
        Err(failure) => failure.report(),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}
