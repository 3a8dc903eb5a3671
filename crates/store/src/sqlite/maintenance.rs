//! Keeping the SQLite store within its bounds: the WAL checkpointer, the disk reserve, retention,
//! backups and exports.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use homeostat_core::config::Retention;
use sqlx::{Row, SqliteConnection};

use super::{from_millis, millis};
use crate::{Error, Prune, Result, RetentionPlan, RetentionReport, Space};

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Rows deleted per prune: a chunk the writer's commit takes in milliseconds, so retention never
/// holds ingest back for long.
const DELETE_CHUNK: i64 = 2_000;

/// Counts commits, so the checkpointer can tell an idle store from a busy one.
#[derive(Clone, Default)]
pub(super) struct Activity(Arc<AtomicU64>);

impl Activity {
    pub(super) fn committed(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The WAL file beside a database.
pub(super) fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

/// Copies the WAL into the database in the background. A passive checkpoint never blocks the
/// writer, but under sustained load it never gets to the end of the log either, so the file only
/// grows; past half of `wal_max_bytes`, and whenever the store has gone quiet, a TRUNCATE
/// checkpoint waits for the writer's current transaction, copies everything and cuts the file back
/// to zero.
pub(super) async fn checkpointer(
    mut connection: SqliteConnection,
    wal: PathBuf,
    wal_max_bytes: u64,
    activity: Activity,
) {
    let mut interval = tokio::time::interval(CHECKPOINT_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.count();
    loop {
        interval.tick().await;
        let now = activity.count();
        let idle = now == seen;
        seen = now;
        let size = file_len(&wal);
        // At half the limit: the log keeps growing while the checkpoint waits for the writer.
        let mode = if size > wal_max_bytes / 2 || (idle && size > 0) {
            "TRUNCATE"
        } else if idle {
            continue;
        } else {
            "PASSIVE"
        };
        if let Err(error) = checkpoint(&mut connection, mode).await {
            tracing::warn!(%error, mode, wal_bytes = size, "WAL checkpoint failed; will retry");
        }
    }
}

/// Runs one checkpoint. A TRUNCATE checkpoint that could not finish (a reader was still on the
/// log) reports busy in its first column rather than failing.
pub(super) async fn checkpoint(connection: &mut SqliteConnection, mode: &str) -> Result<bool> {
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(&mut *connection)
        .await?;
    let busy: i64 = row.try_get(0)?;
    Ok(busy == 0)
}

/// A file of `bytes` held beside the database and deleted when the disk fills, so that the journal
/// has room to record what runs did even when something else filled the file system.
pub(super) struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: AtomicBool,
}

impl Reserve {
    pub(super) fn new(database: &Path, bytes: u64) -> Self {
        let mut name = database.as_os_str().to_os_string();
        name.push("-reserve");
        let reserve = Self {
            path: PathBuf::from(name),
            bytes,
            held: AtomicBool::new(false),
        };
        if bytes == 0 {
            let _ = std::fs::remove_file(&reserve.path);
        } else {
            reserve.take();
        }
        reserve
    }

    /// Allocates the file (really: blocks on disk, not a sparse file). Fails quietly when there is
    /// no room; the next [`Reserve::take`] tries again.
    fn take(&self) -> bool {
        if self.bytes == 0 || self.held.load(Ordering::Relaxed) {
            return self.held.load(Ordering::Relaxed);
        }
        let allocated = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(|error| error.to_string())
            .and_then(|file| {
                nix::fcntl::posix_fallocate(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    0,
                    self.bytes as i64,
                )
                .map_err(|error| error.to_string())
            });
        match allocated {
            Ok(()) => {
                self.held.store(true, Ordering::Relaxed);
                true
            }
            Err(error) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::debug!(%error, path = %self.path.display(), "cannot allocate the disk reserve yet");
                false
            }
        }
    }

    /// Gives the reserved space back to the file system, once the disk is full.
    pub(super) fn release(&self) {
        if self.held.swap(false, Ordering::Relaxed) {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::warn!(
                    bytes = self.bytes,
                    path = %self.path.display(),
                    "the disk is full: released the store's reserve so runs can record their outcomes"
                ),
                Err(error) => tracing::error!(%error, "cannot release the disk reserve"),
            }
        }
    }

    /// Free space on the store's file system, taking the reserve back once there is room for it
    /// and as much again.
    pub(super) fn space(&self, database: &Path) -> Option<Space> {
        let directory = database
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let stat = nix::sys::statvfs::statvfs(directory).ok()?;
        let mut free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        if !self.held.load(Ordering::Relaxed) && self.bytes > 0 && free >= self.bytes * 2 {
            if self.take() {
                tracing::info!(path = %self.path.display(), "disk space is back: the store's reserve is held again");
            }
            free = free.saturating_sub(self.bytes);
        }
        Some(Space {
            free_bytes: free,
            reserve_bytes: if self.held.load(Ordering::Relaxed) {
                self.bytes
            } else {
                0
            },
            database_bytes: file_len(database),
            wal_bytes: file_len(&wal_path(database)),
        })
    }
}

/// The first sequence number of `table` whose `column` (a time in milliseconds) is at or after
/// `at`, or one past the last row. Times grow with sequence numbers (the single writer assigns both),
/// so a binary search over the primary key finds it in a few dozen point reads, with no index on
/// the time.
async fn first_seq_at(
    connection: &mut SqliteConnection,
    table: &str,
    column: &str,
    at: DateTime<Utc>,
) -> Result<i64> {
    let (low, high): (Option<i64>, Option<i64>) =
        sqlx::query_as(&format!("SELECT MIN(seq), MAX(seq) FROM {table}"))
            .fetch_one(&mut *connection)
            .await?;
    let (Some(mut low), Some(high)) = (low, high) else {
        return Ok(0);
    };
    let mut high = high + 1;
    let target = millis(at);
    let probe = format!("SELECT seq, {column} FROM {table} WHERE seq >= ? ORDER BY seq LIMIT 1");
    while low < high {
        let middle = low + (high - low) / 2;
        let row: Option<(i64, i64)> = sqlx::query_as(&probe)
            .bind(middle)
            .fetch_optional(&mut *connection)
            .await?;
        match row {
            Some((seq, time)) if time < target => low = seq + 1,
            Some((seq, _)) => high = seq.min(high),
            None => high = middle,
        }
    }
    Ok(low)
}

/// Where a time range starts and ends in `table`'s sequence numbers: `[start, end)`.
pub(super) async fn seq_range(
    connection: &mut SqliteConnection,
    table: &str,
    column: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(i64, i64)> {
    let start = match since {
        Some(since) => first_seq_at(connection, table, column, since).await?,
        None => 0,
    };
    let end = match until {
        Some(until) => first_seq_at(connection, table, column, until).await?,
        None => i64::MAX,
    };
    Ok((start, end))
}

/// What retention must never take: events a consumer has not read past (its snapshot or cursor),
/// the newest event and journal row (the next sequence numbers are counted from them). Runs in
/// progress keep their triggering events, and the newest incident stays; both are checked where
/// the rows are deleted ([`prune`]).
struct Floors {
    /// Events at or after this stay.
    events: i64,
    /// Journal rows at or after this stay.
    journal: i64,
}

async fn floors(connection: &mut SqliteConnection) -> Result<Floors> {
    let consumers: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(seq) FROM (SELECT seq FROM cursors UNION ALL SELECT seq FROM snapshots WHERE seq >= 0)",
    )
    .fetch_one(&mut *connection)
    .await?;
    let newest_event: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
        .fetch_one(&mut *connection)
        .await?;
    let newest_journal: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM journal")
        .fetch_one(&mut *connection)
        .await?;
    // A consumer reads events after its position: the event at the position itself may go.
    let events = match (consumers, newest_event) {
        (Some(consumer), Some(newest)) => (consumer + 1).min(newest),
        (None, Some(newest)) => newest,
        (_, None) => 0,
    };
    Ok(Floors {
        events,
        journal: newest_journal.unwrap_or(0),
    })
}

/// Sequence-number ranges `[from, below)` of `table`, in chunks of [`DELETE_CHUNK`], with the rows
/// of each that `condition` selects; empty chunks are left out.
async fn chunks(
    connection: &mut SqliteConnection,
    table: &str,
    condition: &str,
    below: i64,
) -> Result<Vec<(i64, i64, u64)>> {
    let low: Option<i64> = sqlx::query_scalar(&format!("SELECT MIN(seq) FROM {table}"))
        .fetch_one(&mut *connection)
        .await?;
    let Some(mut low) = low else {
        return Ok(Vec::new());
    };
    let mut chunks = Vec::new();
    while low < below {
        let high = (low + DELETE_CHUNK).min(below);
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} WHERE seq >= ? AND seq < ? AND ({condition})"
        ))
        .bind(low)
        .bind(high)
        .fetch_one(&mut *connection)
        .await?;
        if count > 0 {
            chunks.push((low, high, count as u64));
        }
        low = high;
        tokio::task::yield_now().await;
    }
    Ok(chunks)
}

/// Runs in progress keep the events that triggered them: recovery reads them.
const EVENTS_THAT_MAY_GO: &str = "id NOT IN (SELECT event_id FROM runs WHERE status = 'running')";
/// Event-level journal rows (decisions); a run's and an incident's rows go with them.
const LOOSE_ROWS: &str = "run_id IS NULL AND incident_id IS NULL";

/// The runs or the incidents retention thins: those past a cutoff (bound first), still holding
/// journal rows when only their details go, paged by id (bound second).
struct Owners {
    details: &'static str,
    summaries: &'static str,
    /// The journal column that links their details.
    column: &'static str,
}

const RUNS: Owners = Owners {
    details: "SELECT id FROM runs WHERE status <> 'running' AND finished_at < ? AND id > ? \
              AND EXISTS (SELECT 1 FROM journal WHERE journal.run_id = runs.id) ORDER BY id",
    summaries:
        "SELECT id FROM runs WHERE status <> 'running' AND finished_at < ? AND id > ? ORDER BY id",
    column: "run_id",
};

const INCIDENTS: Owners = Owners {
    details: "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id > ? \
              AND EXISTS (SELECT 1 FROM journal WHERE journal.incident_id = incidents.id) ORDER BY id",
    // The newest incident stays whatever its age: new incidents are numbered after the highest
    // number stored.
    summaries: "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id > ? \
                AND id < (SELECT MAX(id) FROM incidents) ORDER BY id",
    column: "incident_id",
};

/// The ids `select` pages through, in pages of 500, with the journal rows each holds.
async fn owned<Id>(
    connection: &mut SqliteConnection,
    select: &str,
    column: &str,
    cutoff: i64,
) -> Result<Vec<(Vec<Id>, u64)>>
where
    Id: Default + Clone + Send + Unpin + 'static,
    Id: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + for<'q> sqlx::Encode<'q, sqlx::Sqlite>,
    Id: sqlx::Type<sqlx::Sqlite>,
{
    let mut pages = Vec::new();
    let mut after = Id::default();
    loop {
        let ids: Vec<Id> = sqlx::query_scalar(&format!("{select} LIMIT 500"))
            .bind(cutoff)
            .bind(&after)
            .fetch_all(&mut *connection)
            .await?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        let mut rows = 0u64;
        for id in &ids {
            let count: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM journal WHERE {column} = ?"))
                    .bind(id.clone())
                    .fetch_one(&mut *connection)
                    .await?;
            rows += count as u64;
        }
        pages.push((ids, rows));
        tokio::task::yield_now().await;
    }
    Ok(pages)
}

/// How much of the database file holds rows (freed pages are reused, not returned).
async fn used_bytes(connection: &mut SqliteConnection) -> Result<u64> {
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut *connection)
        .await?;
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut *connection)
        .await?;
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *connection)
        .await?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// What the retention policy deletes now, as prunes to commit through the writer (each a chunk a
/// commit takes in milliseconds), with the counts a dry run reports. Planning only reads.
pub(super) async fn plan(
    connection: &mut SqliteConnection,
    policy: &Retention,
    now: DateTime<Utc>,
) -> Result<RetentionPlan> {
    // An age past the calendar's start keeps everything.
    let age = |secs: u64| {
        chrono::Duration::try_seconds(i64::try_from(secs).unwrap_or(i64::MAX))
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let mut plan = RetentionPlan {
        report: RetentionReport {
            dry_run: true,
            bytes_before: used_bytes(connection).await?,
            ..RetentionReport::default()
        },
        prunes: Vec::new(),
    };
    let floors = floors(connection).await?;

    // Events, and the decisions made for them, by age.
    let events_cutoff = age(policy.events_max_age_secs);
    let event_end = first_seq_at(connection, "events", "received_at", events_cutoff)
        .await?
        .min(floors.events);
    for (from, below, rows) in chunks(connection, "events", EVENTS_THAT_MAY_GO, event_end).await? {
        plan.report.events += rows;
        plan.prunes.push(Prune::Events { from, below });
    }
    let journal_end = first_seq_at(connection, "journal", "at", events_cutoff)
        .await?
        .min(floors.journal);
    for (from, below, rows) in chunks(connection, "journal", LOOSE_ROWS, journal_end).await? {
        plan.report.decisions += rows;
        plan.prunes.push(Prune::Decisions { from, below });
    }

    // Details of finished runs and resolved incidents; their summary rows stay. Then summaries,
    // with whatever details are left.
    let details_cutoff = millis(age(policy.details_max_age_secs));
    for (ids, rows) in
        owned::<String>(connection, RUNS.details, RUNS.column, details_cutoff).await?
    {
        plan.report.run_details += rows;
        plan.prunes.push(Prune::Runs {
            ids,
            summaries: false,
        });
    }
    for (ids, rows) in owned::<i64>(
        connection,
        INCIDENTS.details,
        INCIDENTS.column,
        details_cutoff,
    )
    .await?
    {
        plan.report.incident_details += rows;
        plan.prunes.push(Prune::Incidents {
            ids,
            summaries: false,
        });
    }
    let summaries_cutoff = millis(age(policy.summaries_max_age_secs));
    // Details of these were counted above already when both cutoffs have passed them.
    let counted = summaries_cutoff <= details_cutoff;
    for (ids, rows) in
        owned::<String>(connection, RUNS.summaries, RUNS.column, summaries_cutoff).await?
    {
        plan.report.runs += ids.len() as u64;
        if !counted {
            plan.report.run_details += rows;
        }
        plan.prunes.push(Prune::Runs {
            ids,
            summaries: true,
        });
    }
    for (ids, rows) in owned::<i64>(
        connection,
        INCIDENTS.summaries,
        INCIDENTS.column,
        summaries_cutoff,
    )
    .await?
    {
        plan.report.incidents += ids.len() as u64;
        if !counted {
            plan.report.incident_details += rows;
        }
        plan.prunes.push(Prune::Incidents {
            ids,
            summaries: true,
        });
    }

    // By size: past 80% of the limit, the oldest share of events and event-level journal rows that
    // brings the database under 70% of it, estimated from the average row (rows are about alike in
    // size). The headroom is what a busy store writes between two checks (every five seconds)
    // and while the deletes take turns with ingest: the limit is a ceiling, not a target.
    if policy.max_bytes > 0 && plan.report.bytes_before > policy.max_bytes / 10 * 8 {
        let goal = policy.max_bytes / 10 * 7;
        let share = (plan.report.bytes_before - goal) as f64 / plan.report.bytes_before as f64;
        let (low, high): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM events")
                .fetch_one(&mut *connection)
                .await?;
        if let (Some(low), Some(high)) = (low, high) {
            let end = (low + ((high - low + 1) as f64 * share).ceil() as i64)
                .min(floors.events)
                .max(event_end);
            // The same time span of the journal goes with them.
            let until: Option<i64> =
                sqlx::query_scalar("SELECT MAX(received_at) FROM events WHERE seq < ?")
                    .bind(end)
                    .fetch_one(&mut *connection)
                    .await?;
            for (from, below, rows) in chunks(connection, "events", EVENTS_THAT_MAY_GO, end).await?
            {
                if below <= event_end {
                    continue;
                }
                plan.report.by_size += rows;
                plan.prunes.push(Prune::Events {
                    from: from.max(event_end),
                    below,
                });
            }
            if let Some(until) = until {
                let journal_size_end =
                    first_seq_at(connection, "journal", "at", from_millis(until + 1))
                        .await?
                        .min(floors.journal)
                        .max(journal_end);
                for (from, below, rows) in
                    chunks(connection, "journal", LOOSE_ROWS, journal_size_end).await?
                {
                    if below <= journal_end {
                        continue;
                    }
                    plan.report.by_size += rows;
                    plan.prunes.push(Prune::Decisions {
                        from: from.max(journal_end),
                        below,
                    });
                }
            }
        }
    }
    plan.report.bytes_after = plan.report.bytes_before;
    Ok(plan)
}

/// Deletes what one prune names, inside the writer's transaction; the rows deleted.
pub(super) async fn prune(connection: &mut SqliteConnection, prune: &Prune) -> Result<u64> {
    let deleted = match prune {
        Prune::Events { from, below } => sqlx::query(&format!(
            "DELETE FROM events WHERE seq >= ? AND seq < ? AND {EVENTS_THAT_MAY_GO} \
                 AND seq < (SELECT MAX(seq) FROM events)"
        ))
        .bind(from)
        .bind(below)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        Prune::Decisions { from, below } => sqlx::query(&format!(
            "DELETE FROM journal WHERE seq >= ? AND seq < ? AND {LOOSE_ROWS} \
                 AND seq < (SELECT MAX(seq) FROM journal)"
        ))
        .bind(from)
        .bind(below)
        .execute(&mut *connection)
        .await?
        .rows_affected(),
        Prune::Runs { ids, summaries } => {
            let mut deleted = 0;
            for id in ids {
                deleted += sqlx::query(
                    "DELETE FROM journal WHERE run_id = ? AND seq < (SELECT MAX(seq) FROM journal)",
                )
                .bind(id)
                .execute(&mut *connection)
                .await?
                .rows_affected();
                if *summaries {
                    deleted += sqlx::query("DELETE FROM runs WHERE id = ? AND status <> 'running'")
                        .bind(id)
                        .execute(&mut *connection)
                        .await?
                        .rows_affected();
                }
            }
            deleted
        }
        Prune::Incidents { ids, summaries } => {
            let mut deleted = 0;
            for id in ids {
                deleted += sqlx::query(
                    "DELETE FROM journal WHERE incident_id = ? AND seq < (SELECT MAX(seq) FROM journal)",
                )
                .bind(id)
                .execute(&mut *connection)
                .await?
                .rows_affected();
                if *summaries {
                    let gone = sqlx::query(
                        "DELETE FROM incidents WHERE id = ? AND state = 'resolved' \
                         AND id < (SELECT MAX(id) FROM incidents)",
                    )
                    .bind(id)
                    .execute(&mut *connection)
                    .await?
                    .rows_affected();
                    if gone > 0 {
                        deleted += gone
                            + sqlx::query("DELETE FROM incident_members WHERE incident_id = ?")
                                .bind(id)
                                .execute(&mut *connection)
                                .await?
                                .rows_affected();
                    }
                }
            }
            deleted
        }
    };
    Ok(deleted)
}

/// Pages one prune's commit gives back at most (4 MiB of 4 KiB pages): moving pages to the freed
/// ones is written to the WAL, and an unbounded vacuum after a large delete grew the log past
/// `wal_max_bytes`. What is left goes with the next prunes, or is reused for new rows.
const VACUUM_PAGES: u32 = 1024;

/// In the commit that pruned: gives freed pages back to the file system (a database created with
/// `auto_vacuum = INCREMENTAL`; others reuse them for new rows).
pub(super) async fn vacuum(connection: &mut SqliteConnection) -> Result<()> {
    sqlx::query(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// A consistent copy of the live database at `to`, compacted; it must not exist yet.
pub(super) async fn backup(connection: &mut SqliteConnection, to: &Path) -> Result<u64> {
    if to.exists() {
        return Err(Error::Backup(format!(
            "`{}` exists already; choose a new file name",
            to.display()
        )));
    }
    let target = to
        .to_str()
        .ok_or_else(|| Error::Backup(format!("`{}` is not valid UTF-8", to.display())))?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut *connection)
        .await
        .map_err(|error| Error::Backup(error.to_string()))?;
    Ok(file_len(to))
}
