//! `homeostat rules [list|show|disabled|enable]`, through the daemon's API: every rule with what
//! its guards hold now (cooldowns, runs in the rate window, runs and their locks, targets loop
//! detection disabled it for), and turning a disabled rule back on for a target.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::output::{self, Format};
use super::remote::Remote;
use super::runbook::segment;
use super::show::emit;
use super::Global;

/// `homeostat rules [list]`: one line per rule.
pub async fn list(global: &Global, format: Format) -> u8 {
    let rules = match Remote::list(global, "/api/v1/rules", "rules").await {
        Ok(list) => list,
        Err(code) => return code,
    };
    if format.print_data(&rules) {
        return 0;
    }
    if rules.is_empty() {
        eprintln!("the daemon's config has no rules; add them under `rules:`");
        return 0;
    }
    let wide = format == Format::Wide;
    let rows = rules
        .iter()
        .map(|rule| {
            let state = &rule["state"];
            let mut row = vec![
                output::cell(&rule["name"]),
                output::cell(&rule["runbook"]),
                if rule["dry_run"] == true {
                    "dry run"
                } else {
                    "live"
                }
                .to_string(),
                count(&state["cooldowns"]),
                rate(&state["rate"]),
                count(&state["running"]),
                count(&state["disabled_targets"]),
            ];
            if wide {
                row.push(join(&rule["match"]));
                row.push(cooldowns(&state["cooldowns"]));
                row.push(locks(&state["running"]));
                row.push(join(&state["disabled_targets"]));
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &[
            "RULE",
            "RUNBOOK",
            "MODE",
            "COOLDOWNS",
            "RATE",
            "RUNNING",
            "DISABLED",
            "MATCH",
            "COOLING DOWN (UNTIL, UTC)",
            "LOCKS",
            "DISABLED FOR",
        ]
    } else {
        &[
            "RULE",
            "RUNBOOK",
            "MODE",
            "COOLDOWNS",
            "RATE",
            "RUNNING",
            "DISABLED",
        ]
    };
    format.print_table(headers, rows);
    0
}

/// `homeostat rules show RULE`.
pub async fn show(global: &Global, format: Format, name: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let answer = match remote
        .get(&format!("/api/v1/rules/{}", segment(name)))
        .await
    {
        Ok(answer) => answer,
        Err(failure) => return failure.report(),
    };
    if format.print_data(&answer["rule"]) {
        return 0;
    }
    emit(&describe(&answer["rule"]));
    0
}

/// A rule as text: what it matches and runs, its guards, and what they hold.
fn describe(rule: &Value) -> String {
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "{name:<13}{value}");
    };
    field(&mut out, "rule", output::cell(&rule["name"]));
    if let Some(description) = rule["description"].as_str() {
        field(&mut out, "description", description.to_string());
    }
    field(&mut out, "match", join(&rule["match"]));
    if let Some(condition) = rule["condition"].as_str() {
        field(&mut out, "condition", condition.to_string());
    }
    if rule["on_incident"]
        .as_array()
        .is_some_and(|on| !on.is_empty())
    {
        field(&mut out, "on incident", join(&rule["on_incident"]));
    } else {
        field(&mut out, "on", join(&rule["on"]));
    }
    field(
        &mut out,
        "target",
        rule["target"]
            .as_str()
            .unwrap_or("the event's fingerprint")
            .to_string(),
    );
    field(&mut out, "runbook", output::cell(&rule["runbook"]));
    field(
        &mut out,
        "mode",
        if rule["dry_run"] == true {
            "dry run: records what would run, runs nothing"
        } else {
            "live"
        }
        .to_string(),
    );
    let guards = &rule["guards"];
    let mut configured = Vec::new();
    if let Some(secs) = guards["cooldown_secs"].as_u64().filter(|secs| *secs > 0) {
        configured.push(format!("cooldown {secs}s per target"));
    }
    if guards["max_runs"].is_object() {
        configured.push(format!(
            "at most {} runs in {}s",
            guards["max_runs"]["count"], guards["max_runs"]["window_secs"]
        ));
    }
    if let Some(max) = guards["max_concurrent"].as_u64() {
        configured.push(format!("at most {max} at once"));
    }
    if guards["lock"] == true {
        configured.push("one run per target (lock)".into());
    }
    if guards["loop"].is_object() {
        configured.push(format!(
            "loop detection after {} runs in {}s",
            guards["loop"]["runs"], guards["loop"]["window_secs"]
        ));
    }
    field(
        &mut out,
        "guards",
        if configured.is_empty() {
            "none".into()
        } else {
            configured.join("; ")
        },
    );

    let state = &rule["state"];
    let _ = writeln!(out, "\nnow");
    let cooling = cooldowns(&state["cooldowns"]);
    let _ = writeln!(
        out,
        "  cooldown     {}",
        if cooling == "-" {
            "no target".to_string()
        } else {
            format!("until (UTC): {cooling}")
        }
    );
    if state["rate"].is_object() {
        let rate_state = &state["rate"];
        let next = rate_state["next_allowed_at"]
            .as_str()
            .map(|_| {
                format!(
                    "; next run allowed at {}",
                    output::time(&rate_state["next_allowed_at"])
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  rate window  {} of {} runs in {}s{next}",
            rate_state["count"], rate_state["max"], rate_state["window_secs"]
        );
    }
    let running = state["running"].as_array().cloned().unwrap_or_default();
    if running.is_empty() {
        let _ = writeln!(out, "  running      none");
    }
    for run in &running {
        let _ = writeln!(
            out,
            "  running      run {} on `{}`{}",
            output::cell(&run["run"]),
            output::cell(&run["target"]),
            if run["holds_lock"] == true {
                ", holding its lock"
            } else {
                ""
            }
        );
    }
    let disabled = join(&state["disabled_targets"]);
    let _ = writeln!(
        out,
        "  disabled     {}",
        if disabled == "-" {
            "for no target".to_string()
        } else {
            format!(
                "for {disabled} by loop detection; `homeostat rules enable {} --target T` turns it back on",
                output::cell(&rule["name"])
            )
        }
    );
    out
}

/// `homeostat rules disabled`: a table of rule and target, by rule then target.
pub async fn disabled(global: &Global, format: Format) -> u8 {
    let disabled = match Remote::list(global, "/api/v1/rules/disabled", "disabled").await {
        Ok(list) => list,
        Err(code) => return code,
    };
    if format.print_data(&disabled) {
        return 0;
    }
    if disabled.is_empty() {
        eprintln!("no rule is disabled");
        return 0;
    }
    let rows = disabled
        .iter()
        .map(|pair| vec![output::cell(&pair["rule"]), output::cell(&pair["target"])])
        .collect();
    format.print_table(&["RULE", "TARGET"], rows);
    0
}

/// `homeostat rules enable RULE --target TARGET`.
pub async fn enable(global: &Global, rule: &str, target: &str) -> u8 {
    let remote = match Remote::new(global) {
        Ok(remote) => remote,
        Err(code) => return code,
    };
    let path = format!("/api/v1/rules/{}/enable", segment(rule));
    match remote.post(&path, &json!({ "target": target })).await {
        Ok(answer) => {
            emit(&format!(
                "rule {} enabled for {}\n",
                output::cell(&answer["rule"]),
                output::cell(&answer["target"])
            ));
            0
        }
        Err(failure) => failure.report(),
    }
}

fn count(value: &Value) -> String {
    value.as_array().map_or(0, Vec::len).to_string()
}

/// `2/3 in 3600s`, or `-` without `max_runs`.
fn rate(value: &Value) -> String {
    if !value.is_object() {
        return "-".into();
    }
    format!(
        "{}/{} in {}s",
        value["count"], value["max"], value["window_secs"]
    )
}

/// Strings of an array, comma-separated; `-` when none.
fn join(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            item.as_str()
                .map_or_else(|| item.to_string(), str::to_string)
        })
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn cooldowns(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|cooldown| {
            format!(
                "{} {}",
                output::cell(&cooldown["target"]),
                output::time(&cooldown["until"])
            )
        })
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn locks(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter(|run| run["holds_lock"] == true)
        .map(|run| {
            format!(
                "{} by {}",
                output::cell(&run["target"]),
                output::cell(&run["run"])
            )
        })
        .collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_reads_as_text_with_its_guards_state() {
        let rule = json!({
            "name": "restart-api", "match": ["alertname=\"ApiDown\""], "on": ["firing"],
            "on_incident": [], "target": "{{ labels.instance }}", "runbook": "rule:restart-api",
            "dry_run": false,
            "guards": {"cooldown_secs": 600, "max_runs": {"count": 3, "window_secs": 3600},
                "lock": true, "loop": {"runs": 3, "window_secs": 3600}},
            "state": {
                "cooldowns": [{"target": "api-1", "until": "2026-01-01T10:10:00Z"}],
                "rate": {"count": 3, "max": 3, "window_secs": 3600,
                    "next_allowed_at": "2026-01-01T11:00:00Z"},
                "running": [{"run": "r1", "target": "api-1", "holds_lock": true}],
                "disabled_targets": ["api-2"]
            }
        });
        let text = describe(&rule);
        for expected in [
            "match        alertname=\"ApiDown\"",
            "guards       cooldown 600s per target; at most 3 runs in 3600s; one run per target (lock); loop detection after 3 runs in 3600s",
            "  cooldown     until (UTC): api-1 2026-01-01 10:10:00",
            "  rate window  3 of 3 runs in 3600s; next run allowed at 2026-01-01 11:00:00",
            "  running      run r1 on `api-1`, holding its lock",
            "  disabled     for api-2 by loop detection",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert_eq!(rate(&rule["state"]["rate"]), "3/3 in 3600s");
        assert_eq!(locks(&rule["state"]["running"]), "api-1 by r1");
    }
}
