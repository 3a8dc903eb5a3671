//! `homeostat events` and `homeostat runs`: what happened, read straight from the store.

use std::io::IsTerminal;
use std::path::Path;

use homeostat_store::sqlite::SqliteStore;
use homeostat_store::{steps_from_journal, EventQuery, RunQuery, RunStatus, Store};

use super::{config, EXIT_ERROR, EXIT_USAGE};

async fn open(config_path: &Path) -> Result<SqliteStore, u8> {
    let files = config::read(config_path).map_err(|error| error.report())?;
    let parsed = homeostat_core::config::parse(&files)
        .map_err(|diagnostics| config::LoadError::Invalid(diagnostics).report())?;
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

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let bold = std::io::stdout().is_terminal();
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
    if bold {
        println!("\x1b[1m{header}\x1b[0m");
    } else {
        println!("{header}");
    }
    for row in rows {
        println!("{}", line(row));
    }
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
            after_seq: None,
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
    let status = match status.as_deref().map(|text| (text, RunStatus::parse(text))) {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((text, None)) => {
            eprintln!("error: unknown status `{text}`; use running, succeeded, failed, dry_run or needs_attention");
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
            vec![
                run.id.clone(),
                time(run.started_at),
                run.rule.clone(),
                run.target.clone(),
                run.status.as_str().to_string(),
                duration,
                run.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["ID", "STARTED", "RULE", "TARGET", "STATUS", "TOOK", "ERROR"],
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
    println!("run      {}", run.id);
    println!("rule     {}", run.rule);
    println!("target   {}", run.target);
    println!("event    {}", run.event_id);
    println!(
        "status   {}{}",
        run.status.as_str(),
        if run.dry_run { " (dry run)" } else { "" }
    );
    println!("started  {}", time(run.started_at));
    if let Some(finished) = run.finished_at {
        println!("finished {}", time(finished));
    }
    if let Some(error) = &run.error {
        println!("error    {error}");
    }
    if !run.plan.params.is_empty() {
        let params = run
            .plan
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!("params   {params}");
    }
    println!();
    let rows = steps
        .iter()
        .map(|step| {
            let took = step
                .finished_at
                .map(|end| {
                    format!(
                        "{:.3}s",
                        (end - step.started_at).num_milliseconds() as f64 / 1000.0
                    )
                })
                .unwrap_or_else(|| "-".into());
            vec![
                (step.index + 1).to_string(),
                step.name.clone(),
                step.attempt.to_string(),
                step.status.clone(),
                took,
                step.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["#", "STEP", "ATTEMPT", "STATUS", "TOOK", "ERROR"], rows);
    for step in &steps {
        if let Some(output) = &step.output {
            let stdout = output.get("stdout").and_then(|v| v.as_str()).unwrap_or("");
            let stderr = output.get("stderr").and_then(|v| v.as_str()).unwrap_or("");
            if !stdout.is_empty() || !stderr.is_empty() {
                println!("\n--- step {} `{}` output ---", step.index + 1, step.name);
                if !stdout.is_empty() {
                    println!("{}", stdout.trim_end());
                }
                if !stderr.is_empty() {
                    println!("[stderr] {}", stderr.trim_end());
                }
            }
        }
    }
    0
}
