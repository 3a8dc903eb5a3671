//! `homeostat backup`, `homeostat export` and `homeostat retention`: the store's own upkeep, on the
//! database file the config names (the daemon may be running; SQLite lets both at it).

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use homeostat_core::clock::{Clock, SystemClock};
use homeostat_store::{ExportRecord, Store};

use super::output::Format;
use super::{show, Global, EXIT_ERROR};

/// A point in time given on the command line: RFC 3339, or a duration ago (`90m`, `24h`, `7d`).
pub fn parse_when(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = homeostat_api::silences::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration ago (90m, 24h, 7d)")
    })?;
    Ok(SystemClock::default().now() - ago)
}

/// `homeostat backup FILE`: a consistent copy of the live store.
pub async fn backup(global: &Global, to: &Path) -> u8 {
    let store = match show::open(global).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match store.backup(to).await {
        Ok(bytes) => {
            eprintln!("backed up the store to `{}` ({bytes} bytes)", to.display());
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_ERROR
        }
    }
}

/// Records read per query while exporting.
const PAGE: usize = 5_000;

/// `homeostat export`: events and journal entries in `[since, until)` as JSON lines, in the order
/// they happened (events by receipt, entries by time; an event before the entries made for it).
pub async fn export(
    global: &Global,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    output: Option<&Path>,
) -> u8 {
    let store = match show::open(global).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let mut out: Box<dyn Write> = match output {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Box::new(std::io::BufWriter::new(file)),
            Err(error) => {
                eprintln!("error: cannot write `{}`: {error}", path.display());
                return EXIT_ERROR;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match export_into(&*store, since, until, &mut out).await {
        Ok((events, entries)) => {
            if out.flush().is_err() {
                // stdout closed (`| head`): what was wanted has been written.
                return 0;
            }
            eprintln!("exported {events} events and {entries} journal entries");
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_ERROR
        }
    }
}

async fn export_into(
    store: &dyn Store,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> Result<(u64, u64), String> {
    let mut events = std::collections::VecDeque::new();
    let mut entries = std::collections::VecDeque::new();
    let (mut event_after, mut entry_after) = (0i64, 0i64);
    let (mut events_done, mut entries_done) = (false, false);
    let (mut written_events, mut written_entries) = (0u64, 0u64);
    loop {
        if events.is_empty() && !events_done {
            let page = store
                .export_events(since, until, event_after, PAGE)
                .await
                .map_err(|error| error.to_string())?;
            events_done = page.len() < PAGE;
            if let Some(last) = page.last() {
                event_after = last.seq;
            }
            events.extend(page);
        }
        if entries.is_empty() && !entries_done {
            let page = store
                .export_journal(since, until, entry_after, PAGE)
                .await
                .map_err(|error| error.to_string())?;
            entries_done = page.len() < PAGE;
            if let Some(last) = page.last() {
                entry_after = last.seq;
            }
            entries.extend(page);
        }
        let take_event = match (events.front(), entries.front()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(event), Some(entry)) => event.event.received_at <= entry.at,
        };
        let record = if take_event {
            written_events += 1;
            ExportRecord::Event(events.pop_front().expect("checked above"))
        } else {
            written_entries += 1;
            ExportRecord::Journal(entries.pop_front().expect("checked above"))
        };
        let mut line = serde_json::to_string(&record).map_err(|error| error.to_string())?;
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    Ok((written_events, written_entries))
}

/// `homeostat retention`: what the config's `store.retention` deletes now; `--apply` deletes it.
pub async fn retention(global: &Global, apply: bool, format: Format) -> u8 {
    let settings = match show::settings(&global.config_path()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let policy = settings.store.retention.clone();
    // Deleting writes: held against a daemon on the same store for as long as it takes. (Reading
    // what it would delete takes no lock.) A PostgreSQL store has no file to lock; its daemon
    // holds an advisory lock that `retention --apply` does not take.
    let path = global.store.clone().unwrap_or(settings.store.path.clone());
    let _lock = if apply && (global.store.is_some() || settings.store.url.is_none()) {
        match homeostat_store::sqlite::lock::Lock::acquire(&path, SystemClock::default().now()) {
            Ok(lock) => Some(lock),
            Err(error) => {
                eprintln!("error: {error}; a running daemon applies `store.retention` itself every `interval_secs`");
                return EXIT_ERROR;
            }
        }
    } else {
        None
    };
    let store = match show::open(global).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let plan = match store
        .plan_retention(&policy, SystemClock::default().now())
        .await
    {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_ERROR;
        }
    };
    let mut report = plan.report;
    if apply {
        for prune in plan.prunes {
            if let Err(error) = store.commit(&[homeostat_store::Write::Prune(prune)]).await {
                eprintln!("error: {error}");
                return EXIT_ERROR;
            }
        }
        report.dry_run = false;
        report.bytes_after = store
            .space()
            .await
            .map_or(report.bytes_before, |space| space.database_bytes);
    }
    if format.print_data(&report) {
        return 0;
    }
    let verb = if apply { "deleted" } else { "would delete" };
    let rows = vec![
        vec![
            "events".into(),
            report.events.to_string(),
            format!("older than {}", days(policy.events_max_age_secs)),
        ],
        vec![
            "decisions".into(),
            report.decisions.to_string(),
            format!("older than {}", days(policy.events_max_age_secs)),
        ],
        vec![
            "run steps".into(),
            report.run_details.to_string(),
            format!(
                "of runs finished over {} ago",
                days(policy.details_max_age_secs)
            ),
        ],
        vec![
            "incident timelines".into(),
            report.incident_details.to_string(),
            format!(
                "of incidents resolved over {} ago",
                days(policy.details_max_age_secs)
            ),
        ],
        vec![
            "runs".into(),
            report.runs.to_string(),
            format!("finished over {} ago", days(policy.summaries_max_age_secs)),
        ],
        vec![
            "incidents".into(),
            report.incidents.to_string(),
            format!("resolved over {} ago", days(policy.summaries_max_age_secs)),
        ],
        vec![
            "oldest rows, by size".into(),
            report.by_size.to_string(),
            if policy.max_bytes == 0 {
                "no `max_bytes` set".into()
            } else if apply {
                format!("to stay under {} bytes", policy.max_bytes)
            } else {
                format!(
                    "to stay under {} bytes (estimated from the average row)",
                    policy.max_bytes
                )
            },
        ],
    ];
    format.print_table(&["what", verb, "why"], rows);
    eprintln!(
        "the database holds {} bytes of rows{}",
        report.bytes_before,
        if apply {
            format!(", {} after", report.bytes_after)
        } else {
            "; nothing was deleted (add --apply to delete now; the daemon applies the policy every `interval_secs`)".into()
        }
    );
    0
}

fn days(secs: u64) -> String {
    if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else {
        format!("{secs}s")
    }
}
