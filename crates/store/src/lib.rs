//! homeostat's storage: the append-only journal and its projections, behind one [`Store`] trait.
//!
//! SQLite is the default backend ([`sqlite::SqliteStore`]); PostgreSQL (`postgres::PostgresStore`,
//! behind the `postgres` feature) implements the same trait and passes the same conformance suite
//! ([`conformance`]). The engine's writer task is the only
//! caller of [`Store::commit`]: it batches concurrent requests into one transaction (group commit).

pub mod conformance;
#[cfg(feature = "postgres")]
pub mod postgres;
mod retention;
mod sql;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::decide::PlannedRun;
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member, State};
use homeostat_core::{Event, EventKind};
use serde::{Deserialize, Serialize};

pub use homeostat_core::journal::{
    steps as steps_from_journal, EncodedEvent, Entry, JournalEntry, Prune, RunStatus, StepRecord,
    StepStatus, Write,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("database migration {version} failed: {message}")]
    Migration { version: usize, message: String },
    #[error("database error: {0}")]
    Database(String),
    /// The file system holding the store has no room left (SQLite's `SQLITE_FULL`, or `ENOSPC`).
    #[error("the disk holding the store is full: {0}; free space on it or move `store.path`")]
    Full(String),
    #[error("stored record `{id}` is corrupt: {message}")]
    Corrupt { id: String, message: String },
    #[error("the journal writer has stopped")]
    WriterStopped,
    #[error("the journal queue is full")]
    Overloaded,
    #[error("cannot back up the store: {0}")]
    Backup(String),
    /// Another process holds the store ([`Store::lock_exclusive`]).
    #[error("the store is locked: {0}")]
    Locked(String),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_full(&error) {
            Error::Full(error.to_string())
        } else {
            Error::Database(error.to_string())
        }
    }
}

impl Error {
    /// Whether the failure is the store's and may pass (a full disk, a database error), so a caller
    /// should retry later rather than give up.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Full(_) | Error::Database(_) | Error::Overloaded
        )
    }
}

/// `SQLITE_FULL` (13, and its extended codes), PostgreSQL's `disk_full` (SQLSTATE 53100), or an
/// I/O error for a full device.
fn is_full(error: &sqlx::Error) -> bool {
    const ENOSPC: i32 = 28;
    match error {
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            // SQLSTATEs have five characters; SQLite's codes, extended ones too, fewer.
            if code.len() == 5 {
                code == "53100"
            } else {
                code.parse::<i32>().is_ok_and(|code| code & 0xff == 13)
            }
        }),
        sqlx::Error::Io(io) => io.raw_os_error() == Some(ENOSPC),
        _ => false,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a committed batch was assigned: the sequence number of each `Write::Event`, in order;
/// and how many rows its prunes deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub event_seqs: Vec<i64>,
    pub pruned: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub rule: String,
    pub runbook: String,
    pub started_by: Option<String>,
    pub target: String,
    pub event_id: String,
    pub status: RunStatus,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub plan: PlannedRun,
    /// The incident the run acts on ([`Write::RunIncident`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IncidentId>,
}

/// Which events to read. Unset filters match everything; `limit` 0 reads one.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub limit: usize,
    /// Only events with a larger sequence number.
    pub after_seq: Option<i64>,
    /// Only events with a smaller sequence number: the cursor of the next page, newest first.
    pub before_seq: Option<i64>,
    pub source: Option<String>,
    /// Newest first when true (for people); oldest first when false (for consumers).
    pub newest_first: bool,
    /// Only events of this kind. Kinds other than `alert` are indexed: `change` events for a
    /// service are found without reading the alerts.
    pub kind: Option<EventKind>,
    /// Only events received at or after this time.
    pub received_after: Option<DateTime<Utc>>,
    /// Only events with this label (name, value). Each candidate's body is parsed to check it, so
    /// narrow the query by `kind` or `source` too.
    pub label: Option<(String, String)>,
}

/// Which runs to read, newest started first. Unset filters match everything; `limit` 0 reads one.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub limit: usize,
    pub status: Option<RunStatus>,
    pub rule: Option<String>,
    /// Only runs started at or after this time.
    pub started_after: Option<DateTime<Utc>>,
    /// Only runs linked to this incident.
    pub incident: Option<IncidentId>,
    /// Only runs after this one in the list's order (started earlier, or at the same time with a
    /// smaller id): the cursor of the next page.
    pub before: Option<(DateTime<Utc>, String)>,
}

/// Which incidents to read, newest (highest number) first. Unset filters match everything; `limit`
/// 0 reads one.
#[derive(Clone, Debug, Default)]
pub struct IncidentQuery {
    pub limit: usize,
    /// Only incidents not resolved.
    pub open_only: bool,
    /// Only incidents in this state.
    pub state: Option<State>,
    pub group_key: Option<String>,
    /// Only incidents opened at or after this time.
    pub opened_after: Option<DateTime<Utc>>,
    /// Only incidents whose grouping labels include this one (name, value).
    pub label: Option<(String, String)>,
    /// Only incidents with a smaller number: the cursor of the next page.
    pub before_id: Option<IncidentId>,
}

/// How many incidents are in each state, for the dashboard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IncidentCounts {
    pub open: u64,
    pub acknowledged: u64,
    pub mitigated: u64,
    pub resolved: u64,
}

impl IncidentCounts {
    /// The counts from a store's rows: incidents per state short of resolved (read through the
    /// partial index of open incidents), and how many incidents there are in all, the rest of
    /// which are resolved (they pile up, so they are not counted one by one).
    pub fn from_rows(not_resolved: Vec<(String, i64)>, total: i64) -> Result<Self> {
        let mut counts = Self::default();
        let mut open = 0;
        for (state, count) in not_resolved {
            counts.add(&state, count)?;
            open += count;
        }
        counts.add("resolved", total - open)?;
        Ok(counts)
    }

    /// Adds `count` incidents in `state`, as a store's rows name it.
    fn add(&mut self, state: &str, count: i64) -> Result<()> {
        let count = u64::try_from(count).unwrap_or(0);
        let Some(state) = State::parse(state) else {
            return Err(Error::Corrupt {
                id: "incidents".into(),
                message: format!("unknown incident state `{state}`"),
            });
        };
        match state {
            State::Open => self.open += count,
            State::Acknowledged => self.acknowledged += count,
            State::Mitigated => self.mitigated += count,
            State::Resolved => self.resolved += count,
        }
        Ok(())
    }
}

/// Room on the store's disk, for admission and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Free bytes on the file system, not counting the reserve.
    pub free_bytes: u64,
    /// The reserve held back for run outcomes; 0 once given back to a full disk.
    pub reserve_bytes: u64,
    pub database_bytes: u64,
    pub wal_bytes: u64,
}

/// What one application of the retention policy deleted, or with `dry_run` would delete.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// Events older than `events_max_age_secs`.
    pub events: u64,
    /// Event-level journal rows (decisions) as old.
    pub decisions: u64,
    /// Journal rows of finished runs older than `details_max_age_secs` (their summary rows stay).
    pub run_details: u64,
    /// Timeline rows of resolved incidents as old.
    pub incident_details: u64,
    /// Summary rows of finished runs older than `summaries_max_age_secs`.
    pub runs: u64,
    /// Summary rows of resolved incidents as old.
    pub incidents: u64,
    /// Events and journal rows deleted (or, in a dry run, estimated) to bring the database under
    /// `max_bytes`, beyond those deleted by age.
    pub by_size: u64,
    /// Bytes of the database holding rows, before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// What the retention policy deletes now: the counts, and the prunes that delete it, each to
/// commit on its own (through the writer, so the deletes take turns with ingest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionPlan {
    pub report: RetentionReport,
    pub prunes: Vec<Prune>,
}

/// One record of an audit export, in the order of the journal: an event as received, or a journal
/// entry. JSON lines of these are what `homeostat export` writes and replay reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum ExportRecord {
    Event(EventRecord),
    Journal(JournalEntry),
}

/// The storage backend. Every method is one transaction; `commit` is atomic for the whole batch.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a batch atomically. Events get consecutive sequence numbers after the current maximum.
    async fn commit(&self, batch: &[Write]) -> Result<Committed>;
    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>>;
    async fn event(&self, id: &str) -> Result<Option<EventRecord>>;
    async fn journal_for_event(&self, event_id: &str) -> Result<Vec<JournalEntry>>;
    /// The decision rows (what became of each event) of these events, in journal order: what an
    /// events list shows as each event's verdicts.
    async fn decisions_for_events(&self, event_ids: &[String]) -> Result<Vec<JournalEntry>>;
    async fn journal_for_run(&self, run_id: &str) -> Result<Vec<JournalEntry>>;
    async fn runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>>;
    async fn run(&self, id: &str) -> Result<Option<RunRecord>>;
    async fn cursor(&self, name: &str) -> Result<i64>;
    /// A consumer's latest snapshot: the sequence number it was taken at, and its bytes.
    async fn snapshot(&self, name: &str) -> Result<Option<(i64, Vec<u8>)>>;
    /// The newest event from `source`.
    async fn last_event(&self, source: &str) -> Result<Option<EventRecord>>;
    async fn event_count(&self) -> Result<i64>;
    /// Checks that the database answers, for `/readyz`.
    async fn ping(&self) -> Result<()>;
    /// One incident by its number.
    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>>;
    /// Incidents matching the query, newest (highest number) first.
    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>>;
    /// How many incidents are in each state.
    async fn incident_counts(&self) -> Result<IncidentCounts>;
    /// An incident's member alerts, in the order they joined (`first_seen`).
    async fn incident_members(&self, id: IncidentId) -> Result<Vec<Member>>;
    /// Everything the journal holds about an incident, in journal order: its timeline entries, every
    /// entry of the runs linked to it, and the `decision` entries of its members' first and latest
    /// events and of its runs' triggering events.
    async fn incident_timeline(&self, id: IncidentId) -> Result<Vec<JournalEntry>>;
    /// The highest incident number stored, 0 when there is none: the correlator numbers new
    /// incidents after it.
    async fn incidents_max_id(&self) -> Result<IncidentId>;
    /// Silences, newest created first; expired ones (`ends_at <= now`) only when `include_expired`.
    async fn silences(&self, include_expired: bool, now: DateTime<Utc>) -> Result<Vec<Silence>>;
    /// One silence by its id.
    async fn silence(&self, id: &str) -> Result<Option<Silence>>;
    /// Room on the store's disk; `None` for a backend whose disk is not ours to watch.
    async fn space(&self) -> Option<Space> {
        None
    }
    /// What the retention policy deletes now: counts, and the prunes to commit for it. Only reads.
    async fn plan_retention(
        &self,
        policy: &homeostat_core::config::Retention,
        now: DateTime<Utc>,
    ) -> Result<RetentionPlan>;
    /// Writes a consistent, compacted copy of the live store to `to`, which must not exist; returns
    /// its size in bytes.
    async fn backup(&self, to: &std::path::Path) -> Result<u64>;
    /// Events received in `[since, until)` with a sequence number above `after_seq`, oldest first.
    async fn export_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>>;
    /// Journal entries made in `[since, until)` with a sequence number above `after_seq`, oldest first.
    async fn export_journal(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>>;
    /// Makes this process the only one that writes the store, until it stops; fails with
    /// [`Error::Locked`] when another holds it. Only the daemon takes it: the command-line tools
    /// read beside a running daemon. For PostgreSQL, a session-level advisory lock on the writer's
    /// connection.
    async fn lock_exclusive(&self) -> Result<()> {
        Ok(())
    }
    /// Finishes what the store does in the background before the process stops (for SQLite: the
    /// WAL is checkpointed and truncated).
    async fn close(&self) {}
}
