//! `homeostat events [show]`, `homeostat runs` and `homeostat runs show`: what happened, read
//! through the daemon's API, or straight from a SQLite file named with `--store`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use homeostat_store::{
    steps_from_journal, EventQuery, JournalEntry, RunQuery, RunRecord, RunStatus, StepStatus, Store,
};
use serde_json::{json, Value};

use super::output::{self, Format};
use super::remote::Remote;
use super::runbook::segment;
use super::{config, Global, EXIT_ERROR, EXIT_USAGE};

/// The config's settings, parsed but not compiled: enough to find and treat the store, with no
/// secret needed.
pub(super) fn settings(config_path: &Path) -> Result<homeostat_core::config::Config, u8> {
    let files = config::read(config_path).map_err(|error| error.report())?;
    homeostat_core::config::parse(&files)
        .map_err(|diagnostics| config::LoadError::Invalid(diagnostics).report())
}

/// The store the upkeep commands work on: `--store` (a SQLite file), else the store the config
/// names, SQLite or PostgreSQL, opened beside a daemon that may be running.
pub(super) async fn open(global: &Global) -> Result<Arc<dyn Store>, u8> {
    let settings = match &global.store {
        Some(path) => homeostat_core::config::Store {
            path: path.clone(),
            ..Default::default()
        },
        None => settings(&global.config_path())?.store,
    };
    if settings.url.is_none() && !settings.path.exists() {
        eprintln!(
            "error: no database at `{}`; check --store, or the config's `store.path`",
            settings.path.display()
        );
        return Err(EXIT_ERROR);
    }
    homeostat_engine::store::open(&settings)
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

/// Rows as aligned columns, one line each after a header line (bold when `bold`), nothing cut.
pub(super) fn render_table(headers: &[&str], rows: Vec<Vec<String>>, bold: bool) -> String {
    output::render(headers, rows, None, bold)
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error: `println!` would
/// panic on the broken pipe, this stops quietly.
pub(super) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

pub async fn events(global: &Global, format: Format, limit: usize, source: Option<String>) -> u8 {
    let events: Vec<Value> = if global.store.is_some() {
        let store = match open(global).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        let query = EventQuery {
            limit,
            source,
            newest_first: true,
            ..Default::default()
        };
        match store.events(&query).await {
            Ok(events) => events
                .iter()
                .map(|record| serde_json::to_value(record).unwrap_or_default())
                .collect(),
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_ERROR;
            }
        }
    } else {
        let remote = match Remote::new(global) {
            Ok(remote) => remote,
            Err(code) => return code,
        };
        let path = filtered("/api/v1/events", "source", source.as_deref());
        match remote.pages(&path, "events", limit).await {
            Ok(events) => events,
            Err(failure) => return failure.report(),
        }
    };
    if format.print_data(&events) {
        return 0;
    }
    let wide = format == Format::Wide;
    let rows = events
        .iter()
        .map(|event| {
            let mut row = vec![
                output::cell(&event["id"]),
                output::time(&event["received_at"]),
                output::cell(&event["source"]),
                output::cell(&event["status"]),
                output::cell(&event["kind"]),
                output::labels(&event["labels"]),
            ];
            if wide {
                row.insert(0, output::cell(&event["seq"]));
                row.push(output::cell(&event["ingested_by"]));
                row.push(output::verdicts(event));
            }
            row
        })
        .collect();
    let headers: &[&str] = if wide {
        &[
            "SEQ", "ID", "RECEIVED", "SOURCE", "STATUS", "KIND", "LABELS", "BY", "VERDICT",
        ]
    } else {
        &["ID", "RECEIVED", "SOURCE", "STATUS", "KIND", "LABELS"]
    };
    format.print_table(headers, rows);
    0
}

/// `homeostat events show ID`: the event, its verdicts, and the journal entries made for it (what
/// each rule decided).
pub async fn event(global: &Global, format: Format, id: &str) -> u8 {
    let answer = if global.store.is_some() {
        let store = match open(global).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        match (store.event(id).await, store.journal_for_event(id).await) {
            (Ok(Some(event)), Ok(journal)) => json!({ "event": event, "journal": journal }),
            (Ok(None), _) => {
                eprintln!("error: no event has the id `{id}`; list them with `homeostat events`");
                return super::EXIT_FAILED;
            }
            (Err(error), _) | (_, Err(error)) => {
                eprintln!("error: {error}");
                return EXIT_ERROR;
            }
        }
    } else {
        let remote = match Remote::new(global) {
            Ok(remote) => remote,
            Err(code) => return code,
        };
        match remote.get(&format!("/api/v1/events/{}", segment(id))).await {
            Ok(answer) => answer,
            Err(failure) => return failure.report(),
        }
    };
    if format.print_data(&answer) {
        return 0;
    }
    emit(&describe_event(&answer));
    0
}

/// An event as text, from `GET /api/v1/events/{id}`.
fn describe_event(answer: &Value) -> String {
    use std::fmt::Write as _;
    let event = &answer["event"];
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(out, "{name:<12}{value}");
    };
    field(&mut out, "event", output::cell(&event["id"]));
    field(&mut out, "seq", output::cell(&event["seq"]));
    field(&mut out, "received", output::time(&event["received_at"]));
    field(&mut out, "source", output::cell(&event["source"]));
    field(
        &mut out,
        "status",
        format!(
            "{} ({})",
            output::cell(&event["status"]),
            output::cell(&event["kind"])
        ),
    );
    field(&mut out, "fingerprint", output::cell(&event["fingerprint"]));
    if let Some(by) = event["ingested_by"].as_str() {
        field(&mut out, "sent by", by.to_string());
    }
    let verdicts = output::verdicts(event);
    if !verdicts.is_empty() {
        field(&mut out, "verdict", verdicts);
    }
    for (name, key) in [("labels", "labels"), ("annotations", "annotations")] {
        if let Some(map) = event[key].as_object().filter(|map| !map.is_empty()) {
            let _ = writeln!(out, "\n{name}");
            for (key, value) in map {
                let _ = writeln!(out, "  {key}={}", value.as_str().unwrap_or(""));
            }
        }
    }
    let journal = answer["journal"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\njournal (UTC)");
    if journal.is_empty() {
        let _ = writeln!(out, "  (nothing was decided about it yet)");
    }
    for entry in &journal {
        // The journal's own words for the entry, as a timeline puts it; its body if this CLI does
        // not know the kind (a newer daemon's).
        let what = serde_json::from_value::<JournalEntry>(entry.clone())
            .map(|entry| entry.words())
            .unwrap_or_else(|_| entry["body"].to_string());
        let _ = writeln!(
            out,
            "  {}  {:<16}  {what}",
            output::time(&entry["at"]),
            output::cell(&entry["kind"]),
        );
    }
    out
}

pub async fn runs(global: &Global, format: Format, limit: usize, status: Option<String>) -> u8 {
    let parsed_status = match status
        .as_deref()
        .map(|text| (text, text.parse::<RunStatus>().ok()))
    {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((text, None)) => {
            // From the enum, so a new status cannot be missing here (`rejected` was).
            let known: Vec<&str> = RunStatus::ALL
                .iter()
                .map(|status| status.as_str())
                .collect();
            eprintln!(
                "error: unknown status `{text}`; use one of {}",
                known.join(", ")
            );
            return EXIT_USAGE;
        }
    };
    let runs: Vec<RunRecord> = if global.store.is_some() {
        let store = match open(global).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        let query = RunQuery {
            limit,
            status: parsed_status,
            ..Default::default()
        };
        match store.runs(&query).await {
            Ok(runs) => runs,
            Err(error) => {
                eprintln!("error: {error}");
                return EXIT_ERROR;
            }
        }
    } else {
        let remote = match Remote::new(global) {
            Ok(remote) => remote,
            Err(code) => return code,
        };
        let path = filtered("/api/v1/runs", "status", status.as_deref());
        match remote
            .pages(&path, "runs", limit)
            .await
            .and_then(|runs| typed(&Value::Array(runs)))
        {
            Ok(runs) => runs,
            Err(failure) => return failure.report(),
        }
    };
    if format.print_data(&runs) {
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
    format.print_table(
        &[
            "ID", "STARTED", "RUNBOOK", "TRIGGER", "TARGET", "STATUS", "TOOK", "ERROR",
        ],
        rows,
    );
    0
}

/// A value of the API's answer as the record type both sides share.
/// A list's path with its one optional filter, `?name=value`, encoded.
fn filtered(path: &str, name: &str, value: Option<&str>) -> String {
    match value {
        Some(value) => format!("{path}?{name}={}", segment(value)),
        None => path.to_string(),
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, super::remote::Failure> {
    serde_json::from_value(value.clone()).map_err(|error| {
        super::remote::Failure::Connection(format!(
            "the daemon's answer does not read as this CLI expects ({error}); is the CLI older than the daemon?"
        ))
    })
}

pub async fn run(global: &Global, format: Format, id: &str) -> u8 {
    let (run, journal, answer): (RunRecord, Vec<JournalEntry>, Value) = if global.store.is_some() {
        let store = match open(global).await {
            Ok(store) => store,
            Err(code) => return code,
        };
        match (store.run(id).await, store.journal_for_run(id).await) {
            (Ok(Some(run)), Ok(journal)) => {
                let steps = steps_from_journal(&journal);
                let answer = json!({ "run": run, "steps": steps, "journal": journal });
                (run, journal, answer)
            }
            (Ok(None), _) => {
                eprintln!("error: no run has the id `{id}`; list them with `homeostat runs`");
                return super::EXIT_FAILED;
            }
            (Err(error), _) | (_, Err(error)) => {
                eprintln!("error: {error}");
                return EXIT_ERROR;
            }
        }
    } else {
        let remote = match Remote::new(global) {
            Ok(remote) => remote,
            Err(code) => return code,
        };
        let answer = match remote.get(&format!("/api/v1/runs/{}", segment(id))).await {
            Ok(answer) => answer,
            Err(failure) => return failure.report(),
        };
        match (typed(&answer["run"]), typed(&answer["journal"])) {
            (Ok(run), Ok(journal)) => (run, journal, answer),
            (Err(failure), _) | (_, Err(failure)) => return failure.report(),
        }
    };
    if format.print_data(&answer) {
        return 0;
    }
    let steps = steps_from_journal(&journal);
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
