//! homeostat's storage: the append-only journal and its projections, behind one [`Store`] trait.
//!
//! SQLite is the default backend ([`sqlite::SqliteStore`]); PostgreSQL will implement the same trait
//! and pass the same conformance suite ([`conformance`]). Writes go through [`writer::Writer`], which
//! batches concurrent commits into one transaction (group commit).

pub mod conformance;
pub mod sqlite;
pub mod writer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::decide::{Decision, PlannedRun};
use homeostat_core::Event;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("database migration {version} failed: {message}")]
    Migration { version: usize, message: String },
    #[error("database error: {0}")]
    Database(String),
    #[error("stored record `{id}` is corrupt: {message}")]
    Corrupt { id: String, message: String },
    #[error("the journal writer has stopped")]
    WriterStopped,
    #[error("the journal queue is full")]
    Overloaded,
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Database(error.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The state of a run, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// A dry run: every step was rendered and recorded, nothing executed.
    DryRun,
    /// A crash left a non-idempotent step's outcome unknown; a person must look.
    NeedsAttention,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::DryRun => "dry_run",
            RunStatus::NeedsAttention => "needs_attention",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::DryRun,
            Self::NeedsAttention,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// An event with its JSON encoding, made by whoever builds the write: serializing on the request's
/// own task keeps that work off the single writer, which is the pipeline's one serial stage.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    event: Event,
    json: String,
}

impl EncodedEvent {
    pub fn new(event: Event) -> Self {
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "null".into());
        Self { event, json }
    }

    pub fn event(&self) -> &Event {
        &self.event
    }

    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn into_event(self) -> Event {
        self.event
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        Self::new(event)
    }
}

/// One write to the journal. A slice of them passed to [`Store::commit`] commits atomically.
#[derive(Clone, Debug)]
pub enum Write {
    /// An event as received; the writer assigns its sequence number.
    Event(EncodedEvent),
    /// What the rules decided for an event (only written when at least one rule matched).
    Decisions {
        event_id: String,
        at: DateTime<Utc>,
        decisions: Vec<Decision>,
    },
    /// A run's full plan, recorded before any step executes.
    RunStarted { run: PlannedRun, at: DateTime<Utc> },
    /// A step's intent, recorded before it executes.
    StepStarted {
        run_id: String,
        step: usize,
        name: String,
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// A step's outcome, recorded after it executes. `output` must hold no secret.
    StepFinished {
        run_id: String,
        step: usize,
        name: String,
        attempt: u32,
        status: String,
        output: serde_json::Value,
        error: Option<String>,
        at: DateTime<Utc>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        error: Option<String>,
        at: DateTime<Utc>,
    },
    /// Advances a named consumer's position in the event stream.
    Cursor { name: String, seq: i64 },
    /// Advances a consumer's position to the last event of this same commit (or leaves it, if the
    /// commit has no events): for a consumer that commits its output together with its input.
    CursorAtLastEvent { name: String },
    /// Replaces a consumer's state snapshot, taken at event sequence number `seq`.
    Snapshot {
        name: String,
        seq: i64,
        body: Vec<u8>,
    },
}

/// What a committed batch was assigned: the sequence number of each `Write::Event`, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub event_seqs: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub rule: String,
    pub target: String,
    pub event_id: String,
    pub status: RunStatus,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub plan: PlannedRun,
}

/// A step's record, folded from its journal entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub name: String,
    pub attempt: u32,
    /// `running` until an outcome is recorded.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub limit: usize,
    /// Only events with a larger sequence number.
    pub after_seq: Option<i64>,
    pub source: Option<String>,
    /// Newest first when true (for people); oldest first when false (for consumers).
    pub newest_first: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub limit: usize,
    pub status: Option<RunStatus>,
    pub rule: Option<String>,
    pub started_after: Option<DateTime<Utc>>,
}

/// The storage backend. Every method is one transaction; `commit` is atomic for the whole batch.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a batch atomically. Events get consecutive sequence numbers after the current maximum.
    async fn commit(&self, batch: &[Write]) -> Result<Committed>;
    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>>;
    async fn event(&self, id: &str) -> Result<Option<EventRecord>>;
    async fn journal_for_event(&self, event_id: &str) -> Result<Vec<JournalEntry>>;
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
}

/// Folds a run's journal entries into its steps, one record per step attempt.
pub fn steps_from_journal(entries: &[JournalEntry]) -> Vec<StepRecord> {
    let mut steps: Vec<StepRecord> = Vec::new();
    for entry in entries {
        let step = entry.body.get("step").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        let attempt = entry
            .body
            .get("attempt")
            .and_then(|v| v.as_u64())
            .unwrap_or(1) as u32;
        let name = entry
            .body
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        match entry.kind.as_str() {
            "step_started" => steps.push(StepRecord {
                index: step,
                name,
                attempt,
                status: "running".into(),
                started_at: entry.at,
                finished_at: None,
                output: None,
                error: None,
            }),
            "step_finished" => {
                if let Some(record) = steps
                    .iter_mut()
                    .rev()
                    .find(|record| record.index == step && record.attempt == attempt)
                {
                    record.status = entry
                        .body
                        .get("status")
                        .and_then(|v| v.as_str())
                        .unwrap_or("unknown")
                        .to_string();
                    record.finished_at = Some(entry.at);
                    record.output = entry.body.get("output").cloned();
                    record.error = entry
                        .body
                        .get("error")
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                }
            }
            _ => {}
        }
    }
    steps
}
