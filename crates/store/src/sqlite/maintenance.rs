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
use crate::{Error, Result, RetentionReport, Space};

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Rows deleted per transaction: small enough that the writer, which waits for the lock, stalls
/// for milliseconds, not seconds.
const DELETE_CHUNK: i64 = 5_000;

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

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0)
}

/// Copies the WAL into the database in the background. A passive checkpoint never blocks the
/// writer, but under sustained load it never gets to the end of the log either, so the file only
/// grows; past `wal_max_bytes`, and whenever the store has gone quiet, a TRUNCATE checkpoint waits
/// for the writer's current transaction, copies everything and cuts the file back to zero.
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
        let mode = if size > wal_max_bytes || (idle && size > 0) {
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
/// the newest event and journal row (the next sequence numbers are counted from them), and
/// anything of a run still in progress.
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

/// Deletes (or, in a dry run, counts) rows of `table` matching `condition`, in chunks by sequence
/// number below `below`, each chunk its own transaction.
async fn sweep(
    connection: &mut SqliteConnection,
    table: &str,
    condition: &str,
    binds: &[i64],
    below: i64,
    dry_run: bool,
) -> Result<u64> {
    let low: Option<i64> = sqlx::query_scalar(&format!("SELECT MIN(seq) FROM {table}"))
        .fetch_one(&mut *connection)
        .await?;
    let Some(mut low) = low else { return Ok(0) };
    let mut total = 0u64;
    while low < below {
        let high = (low + DELETE_CHUNK).min(below);
        let verb = if dry_run {
            format!("SELECT COUNT(*) FROM {table}")
        } else {
            format!("DELETE FROM {table}")
        };
        let sql = format!("{verb} WHERE seq >= ? AND seq < ? AND ({condition})");
        let mut query = sqlx::query(&sql).bind(low).bind(high);
        for value in binds {
            query = query.bind(*value);
        }
        if dry_run {
            let count: i64 = query.fetch_one(&mut *connection).await?.try_get(0)?;
            total += count as u64;
        } else {
            total += query.execute(&mut *connection).await?.rows_affected();
            // Let the writer in between chunks.
            tokio::task::yield_now().await;
        }
        low = high;
    }
    Ok(total)
}

/// The runs or the incidents that retention thins: how to page through those past a cutoff (ids
/// after the second parameter, in id order), the journal column that links their details, and how
/// to delete a summary row.
struct Owners {
    select: &'static str,
    column: &'static str,
    delete: &'static str,
}

const RUNS: Owners = Owners {
    select:
        "SELECT id FROM runs WHERE status <> 'running' AND finished_at < ? AND id > ? ORDER BY id",
    column: "run_id",
    delete: "DELETE FROM runs WHERE id = ?",
};

/// The newest incident stays whatever its age: new incidents are numbered after the highest number
/// stored.
const INCIDENTS: Owners = Owners {
    select: "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id > ? \
             AND id < (SELECT MAX(id) FROM incidents) ORDER BY id",
    column: "incident_id",
    delete: "DELETE FROM incidents WHERE id = ?",
};

/// One pass over [`Owners`]: their details only, or their summaries too.
struct Pass {
    cutoff: i64,
    summaries: bool,
    journal_floor: i64,
    dry_run: bool,
}

/// Deletes (or counts) the details of the owners a pass selects, and in a summaries pass their
/// summary rows too; returns (summaries, details). A dry run counts details in the details pass
/// only, where an applied run deletes them.
async fn sweep_owned<Id>(
    connection: &mut SqliteConnection,
    owners: &Owners,
    pass: &Pass,
) -> Result<(u64, u64)>
where
    Id: Default + Clone + Send + Unpin + 'static,
    Id: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + for<'q> sqlx::Encode<'q, sqlx::Sqlite>,
    Id: sqlx::Type<sqlx::Sqlite>,
{
    let mut summaries = 0u64;
    let mut details = 0u64;
    let mut after = Id::default();
    let condition = format!("{} = ? AND seq < {}", owners.column, pass.journal_floor);
    loop {
        let ids: Vec<Id> = sqlx::query_scalar(&format!("{} LIMIT 500", owners.select))
            .bind(pass.cutoff)
            .bind(&after)
            .fetch_all(&mut *connection)
            .await?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        for id in &ids {
            if pass.dry_run {
                if !pass.summaries {
                    let count: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM journal WHERE {condition}"
                    ))
                    .bind(id.clone())
                    .fetch_one(&mut *connection)
                    .await?;
                    details += count as u64;
                }
            } else {
                details += sqlx::query(&format!("DELETE FROM journal WHERE {condition}"))
                    .bind(id.clone())
                    .execute(&mut *connection)
                    .await?
                    .rows_affected();
                if pass.summaries {
                    sqlx::query(owners.delete)
                        .bind(id.clone())
                        .execute(&mut *connection)
                        .await?;
                }
            }
            summaries += u64::from(pass.summaries);
        }
        tokio::task::yield_now().await;
    }
    Ok((summaries, details))
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

/// Applies the retention policy (or, with `dry_run`, reports what it would delete).
pub(super) async fn retain(
    connection: &mut SqliteConnection,
    policy: &Retention,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<RetentionReport> {
    // An age past the calendar's start keeps everything.
    let age = |secs: u64| {
        chrono::Duration::try_seconds(i64::try_from(secs).unwrap_or(i64::MAX))
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let mut report = RetentionReport {
        dry_run,
        bytes_before: used_bytes(connection).await?,
        ..RetentionReport::default()
    };
    let floors = floors(connection).await?;
    // Running runs keep their triggering events, which recovery reads.
    let events_condition = "id NOT IN (SELECT event_id FROM runs WHERE status = 'running')";
    // Event-level journal rows: decisions (a run's and an incident's rows go with them).
    let loose = "run_id IS NULL AND incident_id IS NULL";

    let events_cutoff = age(policy.events_max_age_secs);
    let event_end = first_seq_at(connection, "events", "received_at", events_cutoff)
        .await?
        .min(floors.events);
    report.events = sweep(
        connection,
        "events",
        events_condition,
        &[],
        event_end,
        dry_run,
    )
    .await?;
    let journal_end = first_seq_at(connection, "journal", "at", events_cutoff)
        .await?
        .min(floors.journal);
    report.decisions = sweep(connection, "journal", loose, &[], journal_end, dry_run).await?;

    // Details of finished runs and resolved incidents; their summary rows stay. Then summaries,
    // with whatever details are left.
    let details = Pass {
        cutoff: millis(age(policy.details_max_age_secs)),
        summaries: false,
        journal_floor: floors.journal,
        dry_run,
    };
    let summaries = Pass {
        cutoff: millis(age(policy.summaries_max_age_secs)),
        summaries: true,
        ..details
    };
    report.run_details = sweep_owned::<String>(connection, &RUNS, &details).await?.1;
    report.incident_details = sweep_owned::<i64>(connection, &INCIDENTS, &details)
        .await?
        .1;
    let (runs, more_run_details) = sweep_owned::<String>(connection, &RUNS, &summaries).await?;
    report.runs = runs;
    report.run_details += more_run_details;
    let (incidents, more_incident_details) =
        sweep_owned::<i64>(connection, &INCIDENTS, &summaries).await?;
    report.incidents = incidents;
    report.incident_details += more_incident_details;
    if !dry_run && incidents > 0 {
        sqlx::query(
            "DELETE FROM incident_members WHERE incident_id NOT IN (SELECT id FROM incidents)",
        )
        .execute(&mut *connection)
        .await?;
    }

    // By size: the oldest events and event-level journal rows go, a chunk at a time, until the
    // database holds less than 90% of the limit. A dry run estimates from the average row size.
    if policy.max_bytes > 0 {
        let goal = policy.max_bytes / 10 * 9;
        if dry_run {
            let used = report.bytes_before;
            if used > policy.max_bytes {
                let rows: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM journal)",
                )
                .fetch_one(&mut *connection)
                .await?;
                let per_row = used / (rows.max(1) as u64);
                report.by_size = (used - goal) / per_row.max(1);
            }
        } else {
            while used_bytes(connection).await? > goal {
                let oldest: Option<(i64, i64)> =
                    sqlx::query_as("SELECT seq, received_at FROM events ORDER BY seq LIMIT 1")
                        .fetch_optional(&mut *connection)
                        .await?;
                let Some((oldest, _)) = oldest else { break };
                let end = (oldest + DELETE_CHUNK).min(floors.events);
                if end <= oldest {
                    break;
                }
                let last_time: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(received_at) FROM events WHERE seq < ?")
                        .bind(end)
                        .fetch_one(&mut *connection)
                        .await?;
                let deleted =
                    sweep(connection, "events", events_condition, &[], end, false).await?;
                let journal_end = match last_time {
                    Some(time) => first_seq_at(connection, "journal", "at", from_millis(time + 1))
                        .await?
                        .min(floors.journal),
                    None => 0,
                };
                let decisions =
                    sweep(connection, "journal", loose, &[], journal_end, false).await?;
                report.by_size += deleted + decisions;
                if deleted + decisions == 0 {
                    break;
                }
            }
        }
    }
    if !dry_run {
        // Only a database created with `auto_vacuum = INCREMENTAL` gives pages back to the file
        // system; others reuse them for new rows.
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(&mut *connection)
            .await?;
        report.bytes_after = used_bytes(connection).await?;
    } else {
        report.bytes_after = report.bytes_before;
    }
    Ok(report)
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
