//! The SQLite backend: WAL mode, one writer connection, a small pool of readers, embedded migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use homeostat_core::config::Synchronous;
use homeostat_core::runbook::{Input, Record};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::{
    Committed, Error, EventQuery, EventRecord, JournalEntry, Result, RunQuery, RunRecord,
    RunStatus, Store, Write,
};

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_snapshots.sql"),
    include_str!("../migrations/sqlite/0003_runbooks.sql"),
];

/// Rows per multi-row INSERT. A few fixed sizes keep the prepared-statement cache small.
const CHUNKS: &[usize] = &[256, 128, 64, 32, 16, 8, 4, 2, 1];

pub struct SqliteStore {
    writer: Mutex<WriterState>,
    readers: SqlitePool,
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the background connection copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

struct WriterState {
    connection: SqliteConnection,
    next_event_seq: i64,
    next_journal_seq: i64,
}

impl SqliteStore {
    pub async fn open(path: &Path, synchronous: Synchronous) -> Result<Self> {
        let open_error = |error: sqlx::Error| Error::Open {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false);
        // The writer never checkpoints itself: copying the WAL back would stall every commit behind
        // it. A second connection does it in the background; SQLite lets it run beside the writer.
        // The page cache stays at SQLite's default size: every write transaction walks the whole cache
        // (pcache1TruncateUnsafe), and a 64 MiB one cost a third of dispatch throughput.
        let writer_options = options.clone().pragma("wal_autocheckpoint", "0");
        let mut connection = SqliteConnection::connect_with(&writer_options)
            .await
            .map_err(open_error)?;
        migrate(&mut connection).await?;
        let next_event_seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")
                .fetch_one(&mut connection)
                .await?;
        let next_journal_seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM journal")
                .fetch_one(&mut connection)
                .await?;
        let mut checkpoint_connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        let checkpointer = tokio::spawn(async move {
            let mut interval = tokio::time::interval(CHECKPOINT_EVERY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut checkpoint_connection)
                    .await
                {
                    tracing::warn!(%error, "WAL checkpoint failed; will retry");
                }
            }
        });
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await
            .map_err(open_error)?;
        Ok(Self {
            writer: Mutex::new(WriterState {
                connection,
                next_event_seq,
                next_journal_seq,
            }),
            readers,
            checkpointer,
        })
    }
}

async fn migrate(connection: &mut SqliteConnection) -> Result<()> {
    let applied: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *connection)
        .await?;
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = index + 1;
        let failed = |error: sqlx::Error| Error::Migration {
            version,
            message: error.to_string(),
        };
        let mut transaction = connection.begin().await.map_err(failed)?;
        sqlx::raw_sql(migration)
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        sqlx::raw_sql(&format!("PRAGMA user_version = {version}"))
            .execute(&mut *transaction)
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
    }
    Ok(())
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(value: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(value).single().unwrap_or_default()
}

fn insert_sql(table: &str, columns: &[&str], rows: usize, suffix: &str) -> String {
    let placeholders = format!("({})", vec!["?"; columns.len()].join(","));
    format!(
        "INSERT INTO {table} ({}) VALUES {}{suffix}",
        columns.join(","),
        vec![placeholders; rows].join(",")
    )
}

/// A value bound to a statement; keeps the batching code independent of column types.
enum Value {
    Int(i64),
    Text(String),
    OptText(Option<String>),
}

/// Inserts rows with multi-row statements in fixed chunk sizes.
async fn insert_rows(
    connection: &mut SqliteConnection,
    table: &str,
    columns: &[&str],
    suffix: &str,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    let mut remaining = rows.len();
    while remaining > 0 {
        let size = *CHUNKS.iter().find(|size| **size <= remaining).unwrap_or(&1);
        let sql = insert_sql(table, columns, size, suffix);
        let mut query = sqlx::query(&sql);
        for row in rows.by_ref().take(size) {
            for value in row {
                query = match value {
                    Value::Int(v) => query.bind(v),
                    Value::Text(v) => query.bind(v),
                    Value::OptText(v) => query.bind(v),
                };
            }
        }
        query.execute(&mut *connection).await?;
        remaining -= size;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct DecisionsBody<'a> {
    decisions: Vec<homeostat_core::decide::DecisionRecord<'a>>,
}

/// Marks runs finished with one `UPDATE ... FROM (VALUES ...)` per chunk instead of one per run.
async fn update_runs(
    connection: &mut SqliteConnection,
    updates: Vec<(String, RunStatus, Option<String>, i64)>,
) -> Result<()> {
    let mut updates = updates.into_iter();
    let mut remaining = updates.len();
    while remaining > 0 {
        let size = *CHUNKS.iter().find(|size| **size <= remaining).unwrap_or(&1);
        let values = vec!["(?, ?, ?, ?)"; size].join(", ");
        let sql = format!(
            "WITH finished (id, status, error, finished_at) AS (VALUES {values}) \
             UPDATE runs SET status = finished.status, error = finished.error, finished_at = finished.finished_at \
             FROM finished WHERE runs.id = finished.id"
        );
        let mut query = sqlx::query(&sql);
        for (run_id, status, error, at) in updates.by_ref().take(size) {
            query = query
                .bind(run_id)
                .bind(status.as_str())
                .bind(error)
                .bind(at);
        }
        query.execute(&mut *connection).await?;
        remaining -= size;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, batch: &[Write]) -> Result<Committed> {
        let mut state = self.writer.lock().await;
        let mut event_seq = state.next_event_seq;
        let first_event_seq = event_seq;
        let mut journal_seq = state.next_journal_seq;
        let mut events = Vec::new();
        let mut journal = Vec::new();
        let mut committed = Committed::default();
        let mut journal_row = |at: DateTime<Utc>,
                               kind: &str,
                               event_id: Option<&str>,
                               run_id: Option<&str>,
                               body: String| {
            journal.push(vec![
                Value::Int(journal_seq),
                Value::Int(millis(at)),
                Value::Text(kind.to_string()),
                Value::OptText(event_id.map(str::to_string)),
                Value::OptText(run_id.map(str::to_string)),
                Value::Text(body),
            ]);
            journal_seq += 1;
        };
        let mut run_inserts = Vec::new();
        let mut run_updates = Vec::new();
        let mut cursors = Vec::new();
        let mut snapshots = Vec::new();
        for write in batch {
            match write {
                Write::Event(encoded) => {
                    let event = encoded.event();
                    events.push(vec![
                        Value::Int(event_seq),
                        Value::Text(event.id.clone()),
                        Value::Text(event.source.clone()),
                        Value::Text(event.kind.as_str().to_string()),
                        Value::Text(event.status.as_str().to_string()),
                        Value::Text(event.fingerprint.clone()),
                        Value::Int(millis(event.received_at)),
                        Value::Text(encoded.json().to_string()),
                    ]);
                    committed.event_seqs.push(event_seq);
                    event_seq += 1;
                }
                Write::Decisions {
                    event_id,
                    at,
                    decisions,
                } => {
                    journal_row(
                        *at,
                        "decision",
                        Some(event_id),
                        None,
                        to_json(&DecisionsBody {
                            decisions: decisions.iter().map(|decision| decision.record()).collect(),
                        }),
                    );
                }
                Write::RunStarted { run, at } => {
                    let plan = to_json(run);
                    journal_row(
                        *at,
                        "run_started",
                        Some(&run.event_id),
                        Some(&run.id),
                        plan.clone(),
                    );
                    run_inserts.push(vec![
                        Value::Text(run.id.clone()),
                        Value::Text(run.rule.clone()),
                        Value::Text(run.runbook.clone()),
                        Value::OptText(run.started_by.clone()),
                        Value::Text(run.target.clone()),
                        Value::Text(run.event_id.clone()),
                        Value::Text(RunStatus::Running.as_str().to_string()),
                        Value::Int(i64::from(run.dry_run)),
                        Value::Int(millis(*at)),
                        Value::Text(plan),
                    ]);
                }
                Write::RunRecord { run_id, record, at } => {
                    let kind = match record {
                        Record::StepStarted { .. } => "step_started",
                        Record::StepSkipped { .. } => "step_skipped",
                        Record::StepEnded { .. } => "step_ended",
                        Record::RollbackStarted { .. } => "rollback_started",
                        Record::RunEnded(_) => "run_ended",
                    };
                    journal_row(*at, kind, None, Some(run_id), to_json(record));
                }
                Write::RunInput {
                    run_id,
                    input,
                    outputs,
                    at,
                } => {
                    let kind = match input {
                        Input::Outcome { .. } => "step_finished",
                        _ => "run_input",
                    };
                    let mut body = serde_json::to_value(input).unwrap_or_default();
                    if let (Some(outputs), Some(map)) = (outputs, body.as_object_mut()) {
                        map.insert("outputs".into(), outputs.clone());
                    }
                    journal_row(*at, kind, None, Some(run_id), body.to_string());
                }
                Write::RunFinished { run_id, end, at } => {
                    journal_row(*at, "run_finished", None, Some(run_id), to_json(end));
                    let status = RunStatus::parse(&end.status).unwrap_or(RunStatus::Failed);
                    run_updates.push((run_id.clone(), status, end.error.clone(), millis(*at)));
                }
                Write::Cursor { name, seq } => cursors.push((name.clone(), Some(*seq))),
                Write::CursorAtLastEvent { name } => cursors.push((name.clone(), None)),
                Write::Snapshot { name, seq, body } => {
                    snapshots.push((name.clone(), (*seq >= 0).then_some(*seq), body.clone()))
                }
            }
        }
        let mut transaction = state.connection.begin().await?;
        insert_rows(
            &mut transaction,
            "events",
            &[
                "seq",
                "id",
                "source",
                "kind",
                "status",
                "fingerprint",
                "received_at",
                "body",
            ],
            "",
            events,
        )
        .await?;
        insert_rows(
            &mut transaction,
            "journal",
            &["seq", "at", "kind", "event_id", "run_id", "body"],
            "",
            journal,
        )
        .await?;
        insert_rows(
            &mut transaction,
            "runs",
            &[
                "id",
                "rule",
                "runbook",
                "started_by",
                "target",
                "event_id",
                "status",
                "dry_run",
                "started_at",
                "plan",
            ],
            "",
            run_inserts,
        )
        .await?;
        update_runs(&mut transaction, run_updates).await?;
        // "The last event of this commit", for writes made before the sequence numbers were known.
        let last_event_seq = (event_seq > first_event_seq).then_some(event_seq - 1);
        for (name, seq) in cursors {
            let Some(seq) = seq.or(last_event_seq) else {
                continue;
            };
            sqlx::query("INSERT INTO cursors (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq")
                .bind(name)
                .bind(seq)
                .execute(&mut *transaction)
                .await?;
        }
        for (name, seq, body) in snapshots {
            let Some(seq) = seq.or(last_event_seq) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO snapshots (name, seq, body) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, body = excluded.body",
            )
            .bind(name)
            .bind(seq)
            .bind(body)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        // Only a committed batch consumes sequence numbers.
        state.next_event_seq = event_seq;
        state.next_journal_seq = journal_seq;
        Ok(committed)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>> {
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT seq, body FROM events WHERE seq > ? AND (? IS NULL OR source = ?) ORDER BY seq {order} LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(query.after_seq.unwrap_or(0))
            .bind(query.source.as_deref())
            .bind(query.source.as_deref())
            .bind(query.limit.max(1) as i64)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_record).collect()
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        let row = sqlx::query("SELECT seq, body FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(event_record).transpose()
    }

    async fn journal_for_event(&self, event_id: &str) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query("SELECT seq, at, kind, event_id, run_id, body FROM journal WHERE event_id = ? ORDER BY seq")
            .bind(event_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn journal_for_run(&self, run_id: &str) -> Result<Vec<JournalEntry>> {
        let rows = sqlx::query("SELECT seq, at, kind, event_id, run_id, body FROM journal WHERE run_id = ? ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, rule, runbook, started_by, target, event_id, status, dry_run, started_at, finished_at, error, plan FROM runs \
             WHERE (? IS NULL OR status = ?) AND (? IS NULL OR rule = ?) AND started_at >= ? \
             ORDER BY started_at DESC, id DESC LIMIT ?",
        )
        .bind(query.status.map(RunStatus::as_str))
        .bind(query.status.map(RunStatus::as_str))
        .bind(query.rule.as_deref())
        .bind(query.rule.as_deref())
        .bind(query.started_after.map(millis).unwrap_or(i64::MIN))
        .bind(query.limit.max(1) as i64)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(run_record).collect()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(
            "SELECT id, rule, runbook, started_by, target, event_id, status, dry_run, started_at, finished_at, error, plan FROM runs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.readers)
        .await?;
        row.as_ref().map(run_record).transpose()
    }

    async fn cursor(&self, name: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn snapshot(&self, name: &str) -> Result<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT seq, body FROM snapshots WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("body")?)))
            .transpose()
    }

    async fn last_event(&self, source: &str) -> Result<Option<EventRecord>> {
        let row =
            sqlx::query("SELECT seq, body FROM events WHERE source = ? ORDER BY seq DESC LIMIT 1")
                .bind(source)
                .fetch_optional(&self.readers)
                .await?;
        row.as_ref().map(event_record).transpose()
    }

    async fn event_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.readers)
            .await?)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }
}

fn event_record(row: &SqliteRow) -> Result<EventRecord> {
    let seq: i64 = row.try_get("seq")?;
    let body: String = row.try_get("body")?;
    let event = serde_json::from_str(&body).map_err(|error| Error::Corrupt {
        id: seq.to_string(),
        message: error.to_string(),
    })?;
    Ok(EventRecord { seq, event })
}

fn journal_entry(row: &SqliteRow) -> Result<JournalEntry> {
    let seq: i64 = row.try_get("seq")?;
    let body: String = row.try_get("body")?;
    Ok(JournalEntry {
        seq,
        at: from_millis(row.try_get("at")?),
        kind: row.try_get("kind")?,
        event_id: row.try_get("event_id")?,
        run_id: row.try_get("run_id")?,
        body: serde_json::from_str(&body).map_err(|error| Error::Corrupt {
            id: seq.to_string(),
            message: error.to_string(),
        })?,
    })
}

fn run_record(row: &SqliteRow) -> Result<RunRecord> {
    let id: String = row.try_get("id")?;
    let corrupt = |message: String| Error::Corrupt {
        id: id.clone(),
        message,
    };
    let status: String = row.try_get("status")?;
    let plan: String = row.try_get("plan")?;
    Ok(RunRecord {
        rule: row.try_get("rule")?,
        runbook: row.try_get("runbook")?,
        started_by: row.try_get("started_by")?,
        target: row.try_get("target")?,
        event_id: row.try_get("event_id")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown status `{status}`")))?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        started_at: from_millis(row.try_get("started_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(from_millis),
        error: row.try_get("error")?,
        plan: serde_json::from_str(&plan).map_err(|error| corrupt(error.to_string()))?,
        id: id.clone(),
    })
}
