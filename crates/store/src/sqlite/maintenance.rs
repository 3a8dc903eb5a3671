//! Keeping the SQLite store within its bounds: the WAL checkpointer, the disk reserve, what
//! retention needs of SQLite, and backups.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};

use super::bind;
use crate::retention::Sql;
use crate::sql::Value;
use crate::{Error, Result, Space};

/// How often the checkpointer looks at the WAL (and copies it, while the store is busy).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

#[async_trait]
impl Sql for SqliteConnection {
    async fn ints(&mut self, sql: &str, values: Vec<Value>) -> Result<Option<Vec<Option<i64>>>> {
        let row = values
            .into_iter()
            .fold(sqlx::query(sql), bind)
            .fetch_optional(&mut *self)
            .await?;
        let Some(row) = row else { return Ok(None) };
        (0..row.len())
            .map(|index| Ok(row.try_get::<Option<i64>, _>(index)?))
            .collect::<Result<_>>()
            .map(Some)
    }

    async fn texts(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<String>> {
        let rows = values
            .into_iter()
            .fold(sqlx::query(sql), bind)
            .fetch_all(&mut *self)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        Ok(values
            .into_iter()
            .fold(sqlx::query(sql), bind)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }
}

/// Counts commits, so the checkpointer can tell an idle store from a busy one; and hands the
/// WAL's reset from the checkpointer to the writer.
#[derive(Clone, Default)]
pub(super) struct Activity(Arc<(AtomicU64, AtomicBool)>);

impl Activity {
    pub(super) fn committed(&self) {
        self.0 .0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0 .0.load(Ordering::Relaxed)
    }

    /// The checkpointer has just copied the log past half its limit and stands aside: the
    /// writer's own checkpoint copies only the tail and is not refused for the checkpoint lock.
    fn hand_off(&self) {
        self.0 .1.store(true, Ordering::Release);
    }

    fn handed_off(&self) -> bool {
        self.0 .1.load(Ordering::Acquire)
    }

    /// Whether the checkpointer handed the reset over (and takes it).
    pub(super) fn take_hand_off(&self) -> bool {
        self.0 .1.swap(false, Ordering::AcqRel)
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

/// Copies the WAL into the database in the background: a passive checkpoint while the store is
/// busy, which never blocks the writer and leaves less for the writer's own checkpoint to copy
/// (see `SqliteStore::commit`), and a TRUNCATE checkpoint once it has gone quiet, which cuts the
/// file back to zero.
///
/// Never a TRUNCATE while the writer is busy: it must take the write lock between two of the
/// writer's transactions, which come back to back under load, and SQLite's busy handler polls
/// with sleeps, so it can wait for seconds, holding the checkpoint lock all along. With that lock
/// held, the writer's own checkpoint is refused at once, and the log grew to 2.6 times its limit.
///
/// Under sustained load the log is never reset by these passes (SQLite restarts it only after a
/// checkpoint that copied every frame, and commits keep adding frames during each pass), so past
/// half of `wal_max_bytes` the writer resets it between two of its transactions. The writer waits
/// for that, so it should have little to copy: a pass that leaves the log past half hands the
/// reset to the writer and skips its own passes until the writer took it. Measured with
/// `homeostat-bench latency --rate 2000 --synchronous normal`, with the writer's RESTART: passes
/// every 50 ms rather than 250 ms left 1 commit in 12,200 over 12.8 ms instead of 8 in 8,630, and
/// a p99 of 12 ms instead of 24.
pub(super) async fn checkpointer(
    mut connection: SqliteConnection,
    wal: PathBuf,
    wal_max_bytes: u64,
    activity: Activity,
) {
    // A frame is a page and its 24-byte header.
    let frame_bytes = sqlx::query_scalar::<_, i64>("PRAGMA page_size")
        .fetch_one(&mut connection)
        .await
        .ok()
        .and_then(|size| u64::try_from(size).ok())
        .unwrap_or(4096)
        + 24;
    let mut interval = tokio::time::interval(CHECKPOINT_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.count();
    loop {
        interval.tick().await;
        let now = activity.count();
        let idle = now == seen;
        seen = now;
        if activity.handed_off() && !idle {
            continue;
        }
        // Idle with the reset still handed over: the writer will not come back for it.
        activity.take_hand_off();
        let size = file_len(&wal);
        let mode = match (idle, size > 0) {
            (true, true) => "TRUNCATE",
            (true, false) => continue,
            (false, _) => "PASSIVE",
        };
        match checkpoint_frames(&mut connection, mode).await {
            Err(error) => {
                tracing::warn!(%error, mode, wal_bytes = size, "WAL checkpoint failed; will retry");
            }
            // What the log holds, not the file's size: after the writer's RESTART the file keeps
            // its size while the log starts again from its beginning.
            Ok((_, frames)) if !idle && wal_max_bytes > 0 => {
                if frames.saturating_mul(frame_bytes) > wal_max_bytes / 2 {
                    activity.hand_off();
                }
            }
            Ok(_) => {}
        }
    }
}

/// How long the writer waits, past three quarters of the WAL's limit, for a checkpoint that
/// another connection is running to end so that its own can cut the log back.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

/// The writer's own RESTART checkpoint, past half of `wal_max_bytes`: the next commit writes the
/// log from its start again, so the file stops growing. RESTART, not TRUNCATE: a truncated log
/// is grown again block by block, and with a commit's fsync that also commits the file's new
/// size, the resets were the slowest commits (`homeostat-bench latency --rate 2000`: receipt to
/// dispatch p99 81 ms with TRUNCATE, 12 ms with RESTART, `synchronous: normal`). The file keeps
/// its size (half the limit and a pass's worth of commits); the checkpointer cuts it to zero once
/// the store is idle, and past three quarters of the limit the writer's checkpoint is a TRUNCATE.
///
/// Below three quarters of the limit a busy answer (a reader still on the log, or the
/// checkpointer's pass holding the checkpoint lock; SQLite does not wait for that lock) is the
/// next commit's to retry. Past it the writer waits: the checkpointer's passive pass ends with an
/// fsync of the database, which took long enough on a loaded disk for the log to reach 106 MiB
/// against a 64 MiB limit while every retry was refused. Waiting here holds the next commit,
/// which is the limit's backpressure; the quarter left is room for the one batch (ingest and
/// eight prunes) committed before the wait: waiting only at the limit itself let the log reach
/// 70 MiB.
pub(super) async fn checkpoint_in_writer(
    connection: &mut SqliteConnection,
    wal: &Path,
    wal_max_bytes: u64,
) {
    let must = wal_max_bytes / 4 * 3;
    // Past three quarters the file itself is cut back, or it would stay past them and every
    // commit would take this path again.
    let mode = if file_len(wal) > must {
        "TRUNCATE"
    } else {
        "RESTART"
    };
    let deadline = tokio::time::Instant::now() + CHECKPOINT_WAIT;
    loop {
        match checkpoint(connection, mode).await {
            Ok(true) => return,
            Ok(false) if file_len(wal) > must && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(false) if file_len(wal) > must => {
                tracing::warn!(
                    wal_bytes = file_len(wal),
                    wal_max_bytes,
                    "the WAL is near its limit and could not be checkpointed for 10 s; will retry"
                );
                return;
            }
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, "the WAL is past half its limit and could not be checkpointed; will retry");
                return;
            }
        }
    }
}

/// Runs one checkpoint. A RESTART or TRUNCATE checkpoint that could not finish (a reader was still on the
/// log) reports busy in its first column rather than failing.
pub(super) async fn checkpoint(connection: &mut SqliteConnection, mode: &str) -> Result<bool> {
    Ok(checkpoint_frames(connection, mode).await?.0)
}

/// As [`checkpoint`], with the frames in the log (since it was last written from its start): what
/// it holds, which after a RESTART is less than the file's size.
async fn checkpoint_frames(connection: &mut SqliteConnection, mode: &str) -> Result<(bool, u64)> {
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(&mut *connection)
        .await?;
    let busy: i64 = row.try_get(0)?;
    let frames: i64 = row.try_get(1)?;
    Ok((busy == 0, u64::try_from(frames).unwrap_or(0)))
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

/// How much of the database file holds rows (freed pages are reused, not returned).
pub(super) async fn used_bytes(connection: &mut SqliteConnection) -> Result<u64> {
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
