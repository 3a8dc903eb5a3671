//! `homeostat events`, `homeostat runs` and `homeostat runs show`: what happened, read straight from
//! the store.

use std::io::{IsTerminal, Write};
use std::path::Path;

use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{steps_from_journal, EventQuery, RunQuery, RunStatus, StepStatus, Store};

use super::{config, EXIT_ERROR, EXIT_USAGE};

/// The config's settings, parsed but not compiled: enough to find and treat the store, with no
/// secret needed.
pub(super) fn settings(config_path: &Path) -> Result<homeostat_core::config::Config, u8> {
    let files = config::read(config_path).map_err(|error| error.report())?;
    homeostat_core::config::parse(&files)
        .map_err(|diagnostics| config::LoadError::Invalid(diagnostics).report())
}

pub(super) async fn open(config_path: &Path) -> Result<SqliteStore, u8> {
    let parsed = settings(config_path)?;
    if !parsed.store.path.exists() {
        eprintln!(
            "error: no database at `{}`; has `homeostat serve` run with this config?",
            parsed.store.path.display()
        );
        return Err(EXIT_ERROR);
    }
    SqliteStore::open(&parsed.store.path, parsed.store.synchronous)
        .await
        .map_err(|error| {
            eprintln!("error: {error}");
            EXIT_ERROR
        })
}

pub(super) fn print_json(value: &(impl serde::Serialize + ?Sized)) {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    emit(&text);
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Prints rows as aligned columns.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    emit(&render_table(
        headers,
        rows,
        std::io::stdout().is_terminal(),
    ));
}

/// Rows as aligned columns, one line each after a header line (bold when `bold`).
pub(super) fn render_table(headers: &[&str], rows: Vec<Vec<String>>, bold: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(index, cell)| {
                if index == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[index])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header = line(headers.iter().map(|h| h.to_string()).collect());
    let mut out = if bold {
        format!("\x1b[1m{header}\x1b[0m\n")
    } else {
        format!("{header}\n")
    };
    for row in rows {
        out.push_str(line(row).trim_end());
        out.push('\n');
    }
    out
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error: `println!` would
/// panic on the broken pipe, this stops quietly.
pub(super) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

pub async fn events(config_path: &Path, limit: usize, source: Option<String>, json: bool) -> u8 {
    let store = match open(config_path).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let events = match store
        .events(&EventQuery {
            limit,
            source,
            newest_first: true,
            ..Default::default()
        })
        .await
    {
        Ok(events) => events,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_ERROR;
        }
    };
    if json {
        print_json(&events);
        return 0;
    }
    let rows = events
        .iter()
        .map(|record| {
            let event = &record.event;
            let labels = event
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                record.seq.to_string(),
                time(event.received_at),
                event.source.clone(),
                event.status.to_string(),
                event.kind.as_str().to_string(),
                labels,
            ]
        })
        .collect();
    table(
        &["SEQ", "RECEIVED", "SOURCE", "STATUS", "KIND", "LABELS"],
        rows,
    );
    0
}

pub async fn runs(config_path: &Path, limit: usize, status: Option<String>, json: bool) -> u8 {
    let status = match status
        .as_deref()
        .map(|text| (text, text.parse::<RunStatus>().ok()))
    {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((text, None)) => {
            eprintln!("error: unknown status `{text}`; use running, succeeded, failed, rolled_back, cancelled, dry_run or needs_attention");
            return EXIT_USAGE;
        }
    };
    let store = match open(config_path).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let runs = match store
        .runs(&RunQuery {
            limit,
            status,
            ..Default::default()
        })
        .await
    {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_ERROR;
        }
    };
    if json {
        print_json(&runs);
        return 0;
    }
    let rows = runs
        .iter()
        .map(|run| {
            let duration = run
                .finished_at
                .map(|end| {
                    format!(
                        "{:.2}s",
                        (end - run.started_at).num_milliseconds() as f64 / 1000.0
                    )
                })
                .unwrap_or_else(|| "-".into());
            // A rule's runs show the rule; runs started by hand, who started them.
            let by = match (&run.started_by, run.rule.as_str()) {
                (Some(by), _) => format!("by {by}"),
                (None, rule) => rule.to_string(),
            };
            vec![
                run.id.clone(),
                time(run.started_at),
                run.runbook.clone(),
                by,
                run.target.clone(),
                run.status.as_str().to_string(),
                duration,
                run.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STARTED", "RUNBOOK", "TRIGGER", "TARGET", "STATUS", "TOOK", "ERROR",
        ],
        rows,
    );
    0
}

pub async fn run(config_path: &Path, id: &str, json: bool) -> u8 {
    let store = match open(config_path).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let (run, journal) = match (store.run(id).await, store.journal_for_run(id).await) {
        (Ok(Some(run)), Ok(journal)) => (run, journal),
        (Ok(None), _) => {
            eprintln!("error: no run has the id `{id}`; list them with `homeostat runs`");
            return EXIT_ERROR;
        }
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("error: {error}");
            return EXIT_ERROR;
        }
    };
    let steps = steps_from_journal(&journal);
    if json {
        print_json(&serde_json::json!({ "run": run, "steps": steps, "journal": journal }));
        return 0;
    }
    let end = journal.iter().rev().find_map(|entry| match &entry.entry {
        homeostat_store::Entry::RunFinished(end) => Some(end),
        _ => None,
    });
    let field = |name: &str, value: &str| println!("{name:<11}{value}");
    field("run", &run.id);
    field("runbook", &run.runbook);
    if !run.rule.is_empty() {
        field("rule", &run.rule);
    }
    if let Some(by) = &run.started_by {
        field("started by", by);
    }
    field("target", &run.target);
    if !run.event_id.is_empty() {
        field("event", &run.event_id);
    }
    field(
        "status",
        &format!(
            "{}{}",
            run.status.as_str(),
            if run.dry_run { " (dry run)" } else { "" }
        ),
    );
    field("started", &time(run.started_at));
    if let Some(finished) = run.finished_at {
        field(
            "finished",
            &format!(
                "{} (took {})",
                time(finished),
                took(run.started_at, finished)
            ),
        );
    }
    if let Some(error) = &run.error {
        field("error", error);
    }
    if !run.plan.params.is_empty() {
        let params = run
            .plan
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        field("params", &params);
    }
    if let Some(end) = end {
        if let Some(rejected) = &end.rejected {
            let comment = rejected
                .comment
                .as_deref()
                .map(|comment| format!(": {comment}"))
                .unwrap_or_default();
            field(
                "rejected",
                &format!("by `{}` at step `{}`{comment}", rejected.by, rejected.step),
            );
        }
        if !end.undone.is_empty() {
            field("undone", &end.undone.join(", "));
        }
        if !is_empty(&end.outputs) {
            field("outputs", &end.outputs.to_string());
        }
    }
    println!();
    let rows = steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let took = step
                .finished_at
                .map(|end| took(step.started_at, end))
                .unwrap_or_else(|| "-".into());
            // A `wait` until a check counts its polls while it waits.
            let status = match step.polls {
                Some(polls) if step.status == StepStatus::Waiting => {
                    format!("waiting (poll {polls})")
                }
                _ => step.status.to_string(),
            };
            vec![
                (index + 1).to_string(),
                step.step.clone(),
                step.action.clone(),
                step.attempt.to_string(),
                status,
                step.started_at.format("%H:%M:%S%.3f").to_string(),
                took,
                step.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "#", "STEP", "ACTION", "ATTEMPT", "STATUS", "STARTED", "TOOK", "ERROR",
        ],
        rows,
    );
    // A dry run shows what each step would have run, from the inputs it rendered.
    if run.dry_run {
        println!();
        for step in &steps {
            if let Some(summary) = &step.summary {
                println!("{}: would {summary}", step.step);
            }
        }
    }
    // What a waiting step waits for: an approval's approvers and deadline, a wait's last poll.
    for step in steps
        .iter()
        .filter(|step| step.status == StepStatus::Waiting)
    {
        println!("\n--- step `{}` waiting ---", step.step);
        if let Some(summary) = &step.summary {
            println!("{summary}");
        }
        let deadline = step
            .inputs
            .as_ref()
            .and_then(|inputs| inputs.get("deadline"))
            .and_then(|deadline| deadline.as_str())
            .and_then(|deadline| deadline.parse::<chrono::DateTime<chrono::Utc>>().ok());
        if let Some(deadline) = deadline {
            println!("until {}", time(deadline));
        }
        if let (Some(polls), Some(poll)) = (step.polls, &step.last_poll) {
            let observed = if is_empty(&poll.output) {
                String::new()
            } else {
                format!(" ({})", poll.output)
            };
            println!(
                "poll {polls} at {}: {}{observed}",
                time(poll.at),
                poll.error.as_deref().unwrap_or(poll.status.as_str())
            );
        }
    }
    for step in &steps {
        // A parallel or for_each step's outputs are its children's, shown with them.
        let composite = matches!(step.action.as_str(), "parallel" | "for_each");
        let outputs = step.outputs.as_ref().filter(|v| !composite && !is_empty(v));
        let (stdout, stderr) = match &step.output {
            Some(output) => (
                output.get("stdout").and_then(|v| v.as_str()).unwrap_or(""),
                output.get("stderr").and_then(|v| v.as_str()).unwrap_or(""),
            ),
            None => ("", ""),
        };
        if outputs.is_none() && stdout.is_empty() && stderr.is_empty() {
            continue;
        }
        println!("\n--- step `{}` (attempt {}) ---", step.step, step.attempt);
        if let Some(outputs) = outputs {
            println!("[outputs] {outputs}");
        }
        if !stdout.is_empty() {
            println!("{}", stdout.trim_end());
        }
        if !stderr.is_empty() {
            println!("[stderr] {}", stderr.trim_end());
        }
    }
    0
}

fn took(start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>) -> String {
    format!("{:.3}s", (end - start).num_milliseconds() as f64 / 1000.0)
}

/// `null`, or an empty object: nothing worth a line.
fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Object(map) => map.is_empty(),
        _ => false,
    }
}
