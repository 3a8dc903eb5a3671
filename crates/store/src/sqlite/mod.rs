//! The SQLite backend: WAL mode, one writer connection, a small pool of readers, embedded migrations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use homeostat_core::config::Synchronous;
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member, State};

use homeostat_core::{EventKind, Status};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

mod maintenance;

use crate::{
    Committed, Error, EventQuery, EventRecord, IncidentQuery, JournalEntry, Result, RetentionPlan,
    RunQuery, RunRecord, RunStatus, Space, Store, Write,
};

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_snapshots.sql"),
    include_str!("../../migrations/sqlite/0003_runbooks.sql"),
    include_str!("../../migrations/sqlite/0004_incidents.sql"),
];

/// Rows per multi-row INSERT. A few fixed sizes keep the prepared-statement cache small.
const CHUNKS: &[usize] = &[256, 128, 64, 32, 16, 8, 4, 2, 1];

pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<WriterState>,
    /// How the writer connection is opened, to open it again after a failure it may not survive.
    writer_options: SqliteConnectOptions,
    readers: SqlitePool,
    /// For retention, backups and the last checkpoint: long work kept off the writer connection.
    maintenance: Mutex<SqliteConnection>,
    checkpointer: tokio::task::JoinHandle<()>,
    activity: maintenance::Activity,
    reserve: maintenance::Reserve,
    /// The WAL file and its limit: past it, the writer checkpoints itself (see `commit`).
    wal: PathBuf,
    wal_max_bytes: u64,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How a store is opened: durability and the bounds it keeps on disk.
#[derive(Clone, Debug)]
pub struct Options {
    pub synchronous: Synchronous,
    /// Bytes held in a file beside the database, given back when the disk fills (0: none).
    pub reserve_bytes: u64,
    /// The WAL is truncated when it grows past this.
    pub wal_max_bytes: u64,
}

impl Options {
    /// The options a config's `store:` section asks for.
    pub fn from_config(store: &homeostat_core::config::Store) -> Self {
        Self {
            synchronous: store.synchronous,
            reserve_bytes: store.reserve_bytes,
            wal_max_bytes: store.wal_max_bytes,
        }
    }
}

impl Default for Options {
    /// No reserve (tests and tools open many stores); the config's WAL limit.
    fn default() -> Self {
        Self {
            synchronous: Synchronous::default(),
            reserve_bytes: 0,
            wal_max_bytes: homeostat_core::config::Store::default().wal_max_bytes,
        }
    }
}

struct WriterState {
    /// `None` after a failure that closed it and could not open it again; the next commit retries.
    connection: Option<SqliteConnection>,
    next_event_seq: i64,
    next_journal_seq: i64,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path` with default bounds.
    pub async fn open(path: &Path, synchronous: Synchronous) -> Result<Self> {
        Self::open_with(
            path,
            Options {
                synchronous,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn open_with(path: &Path, settings: Options) -> Result<Self> {
        let open_error = |error: sqlx::Error| Error::Open {
            path: path.display().to_string(),
            message: error.to_string(),
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_error)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match settings.synchronous {
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
        let checkpoint_connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        let activity = maintenance::Activity::default();
        let checkpointer = tokio::spawn(maintenance::checkpointer(
            checkpoint_connection,
            maintenance::wal_path(path),
            settings.wal_max_bytes,
            activity.clone(),
        ));
        let maintenance_connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await
            .map_err(open_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer_options,
            writer: Mutex::new(WriterState {
                connection: Some(connection),
                next_event_seq,
                next_journal_seq,
            }),
            readers,
            maintenance: Mutex::new(maintenance_connection),
            checkpointer,
            activity,
            reserve: maintenance::Reserve::new(path, settings.reserve_bytes),
            wal: maintenance::wal_path(path),
            wal_max_bytes: settings.wal_max_bytes,
        })
    }
}

impl SqliteStore {
    /// Leaves the writer with no transaction open after a failed commit, whatever the failure left
    /// behind: a ROLLBACK, or when even that fails, a closed connection (closing rolls back and
    /// releases the write lock) that the next commit opens again.
    async fn abandon_transaction(&self, state: &mut WriterState) {
        let Some(connection) = state.connection.as_mut() else {
            return;
        };
        match sqlx::query("ROLLBACK").execute(&mut *connection).await {
            Ok(_) => return,
            // SQLite rolled the transaction back itself, as it may on a full disk.
            Err(error) if error.to_string().contains("no transaction is active") => return,
            Err(error) => {
                tracing::warn!(%error, "rollback after a failed commit failed; reopening the writer connection")
            }
        }
        if let Some(connection) = state.connection.take() {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the writer connection failed");
            }
        }
        match SqliteConnection::connect_with(&self.writer_options).await {
            Ok(fresh) => state.connection = Some(fresh),
            Err(error) => {
                tracing::error!(%error, "cannot reopen the writer connection; the next commit tries again")
            }
        }
    }
}

async fn migrate(connection: &mut SqliteConnection) -> Result<()> {
    let applied: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *connection)
        .await?;
    if applied == 0 {
        // Before the first table: retention can then give deleted pages back to the file system
        // (`PRAGMA incremental_vacuum`). The connection set WAL mode first, which wrote the
        // database's header, so the setting takes effect only through a VACUUM (instant on an
        // empty file). An existing database keeps its setting; its freed pages are reused for new
        // rows.
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut *connection)
            .await?;
        sqlx::query("VACUUM").execute(&mut *connection).await?;
    }
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
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind(query: Query<'_>, value: Value) -> Query<'_> {
    match value {
        Value::Int(v) => query.bind(v),
        Value::OptInt(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::OptText(v) => query.bind(v),
    }
}

/// A `WHERE` clause made of the filters that are set. Terms like `(? IS NULL OR x = ?)` would hide
/// the indexes from SQLite's planner, and a partial index is only used when the query repeats its
/// condition word for word.
#[derive(Default)]
struct Filter {
    terms: Vec<&'static str>,
    values: Vec<Value>,
}

impl Filter {
    fn term(&mut self, sql: &'static str, values: impl IntoIterator<Item = Value>) {
        self.terms.push(sql);
        self.values.extend(values);
    }

    fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }

    /// Binds the terms' values, then `extra` (for clauses after the `WHERE`, such as `LIMIT`).
    fn bind<'q>(self, sql: &'q str, extra: impl IntoIterator<Item = Value>) -> Query<'q> {
        self.values
            .into_iter()
            .chain(extra)
            .fold(sqlx::query(sql), bind)
    }
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
        let query = rows
            .by_ref()
            .take(size)
            .flatten()
            .fold(sqlx::query(&sql), bind);
        query.execute(&mut *connection).await?;
        remaining -= size;
    }
    Ok(())
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

/// One value per key, the last one put, in the order keys first appeared: what a batch of upserts
/// leaves, written as one row per key.
struct Latest<K, V> {
    index: HashMap<K, usize>,
    values: Vec<V>,
}

impl<K, V> Default for Latest<K, V> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            values: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V> Latest<K, V> {
    fn put(&mut self, key: K, value: V) {
        match self.index.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => self.values[*entry.get()] = value,
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(self.values.len());
                self.values.push(value);
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.index
            .get(key)
            .and_then(|index| self.values.get(*index))
    }

    fn into_values(self) -> impl Iterator<Item = V> {
        self.values.into_iter()
    }
}

/// A member written again: the later write, but how it joined stays as the first write had it.
/// Mirrors [`MEMBER_UPSERT`], for two writes of one member in the same batch.
fn keep_first(first: &Member, later: &Member) -> Member {
    Member {
        first_event_id: first.first_event_id.clone(),
        first_seen: first.first_seen,
        starts_at: first.starts_at.or(later.starts_at),
        ..later.clone()
    }
}

const JOURNAL_COLUMNS: &str = "seq, at, kind, event_id, run_id, incident_id, body";

const RUN_COLUMNS: &str = "id, rule, runbook, started_by, target, event_id, status, dry_run, \
     started_at, finished_at, error, plan, incident_id";

const INCIDENT_COLUMNS: &[&str] = &[
    "id",
    "state",
    "title",
    "group_key",
    "labels",
    "flapping",
    "escalated",
    "members_firing",
    "members_total",
    "reopened",
    "started_at",
    "opened_at",
    "acknowledged_at",
    "acknowledged_by",
    "mitigated_at",
    "resolved_at",
    "resolved_by",
    "escalated_at",
    "updated_at",
];

const INCIDENT_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
     title = excluded.title, group_key = excluded.group_key, labels = excluded.labels, \
     flapping = excluded.flapping, escalated = excluded.escalated, \
     members_firing = excluded.members_firing, members_total = excluded.members_total, \
     reopened = excluded.reopened, started_at = excluded.started_at, opened_at = excluded.opened_at, \
     acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
     mitigated_at = excluded.mitigated_at, resolved_at = excluded.resolved_at, \
     resolved_by = excluded.resolved_by, escalated_at = excluded.escalated_at, \
     updated_at = excluded.updated_at";

const MEMBER_COLUMNS: &[&str] = &[
    "incident_id",
    "fingerprint",
    "source",
    "status",
    "labels",
    "annotations",
    "first_event_id",
    "last_event_id",
    "first_seen",
    "last_seen",
    "starts_at",
    "generator_url",
];

/// Replaces a member but keeps how it joined: its first event, when it was first seen, and its
/// `starts_at` (unless the first write had none).
const MEMBER_UPSERT: &str = " ON CONFLICT (incident_id, fingerprint) DO UPDATE SET \
     source = excluded.source, status = excluded.status, labels = excluded.labels, \
     annotations = excluded.annotations, last_event_id = excluded.last_event_id, \
     last_seen = excluded.last_seen, \
     starts_at = COALESCE(incident_members.starts_at, excluded.starts_at), \
     generator_url = excluded.generator_url";

const SILENCE_COLUMNS: &[&str] = &[
    "id",
    "matchers",
    "starts_at",
    "ends_at",
    "created_by",
    "comment",
    "created_at",
    "expired_by",
];

const SILENCE_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, \
     starts_at = excluded.starts_at, ends_at = excluded.ends_at, created_by = excluded.created_by, \
     comment = excluded.comment, created_at = excluded.created_at, expired_by = excluded.expired_by";

/// `json_each` rather than `json_extract`: a label name needs no quoting as a JSON path.
const INCIDENT_HAS_LABEL: &str =
    "EXISTS (SELECT 1 FROM json_each(incidents.labels) WHERE key = ? AND value = ?)";
const EVENT_HAS_LABEL: &str =
    "EXISTS (SELECT 1 FROM json_each(events.body, '$.labels') WHERE key = ? AND value = ?)";

fn incident_row(incident: &Incident) -> Vec<Value> {
    let time = |at: Option<DateTime<Utc>>| Value::OptInt(at.map(millis));
    vec![
        Value::Int(incident.id),
        Value::Text(incident.state.as_str().to_string()),
        Value::Text(incident.title.clone()),
        Value::Text(incident.group_key.clone()),
        Value::Text(to_json(&incident.labels)),
        Value::Int(i64::from(incident.flapping)),
        Value::Int(i64::from(incident.escalated)),
        Value::Int(i64::from(incident.members_firing)),
        Value::Int(i64::from(incident.members_total)),
        Value::Int(i64::from(incident.reopened)),
        Value::Int(millis(incident.started_at)),
        Value::Int(millis(incident.opened_at)),
        time(incident.acknowledged_at),
        Value::OptText(incident.acknowledged_by.clone()),
        time(incident.mitigated_at),
        time(incident.resolved_at),
        Value::OptText(incident.resolved_by.clone()),
        time(incident.escalated_at),
        Value::Int(millis(incident.updated_at)),
    ]
}

fn member_row(member: &Member) -> Vec<Value> {
    vec![
        Value::Int(member.incident),
        Value::Text(member.fingerprint.clone()),
        Value::Text(member.source.clone()),
        Value::Text(member.status.as_str().to_string()),
        Value::Text(to_json(&member.labels)),
        Value::Text(to_json(&member.annotations)),
        Value::Text(member.first_event_id.clone()),
        Value::Text(member.last_event_id.clone()),
        Value::Int(millis(member.first_seen)),
        Value::Int(millis(member.last_seen)),
        Value::OptInt(member.starts_at.map(millis)),
        Value::OptText(member.generator_url.clone()),
    ]
}

fn silence_row(silence: &Silence) -> Vec<Value> {
    vec![
        Value::Text(silence.id.clone()),
        Value::Text(to_json(&silence.matchers)),
        Value::Int(millis(silence.starts_at)),
        Value::Int(millis(silence.ends_at)),
        Value::Text(silence.created_by.clone()),
        Value::Text(silence.comment.clone()),
        Value::Int(millis(silence.created_at)),
        Value::OptText(silence.expired_by.clone()),
    ]
}

/// `LIMIT` for a query's `limit`: 0 reads one row, as the other queries do.
fn limit(limit: usize) -> Value {
    Value::Int(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
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
        let mut run_inserts = Vec::new();
        // Runs started in this batch, so a `RunIncident` right after fills the inserted row.
        let mut run_rows: HashMap<&str, usize> = HashMap::new();
        let mut run_links = Vec::new();
        let mut run_updates = Vec::new();
        let mut cursors = Vec::new();
        let mut snapshots = Vec::new();
        // The correlator may rewrite an incident or a member many times in one batch: one row each
        // is written, as the batch leaves it.
        let mut incidents = Latest::default();
        let mut members: Latest<(IncidentId, &str), Member> = Latest::default();
        let mut silences = Latest::default();
        let mut prunes = Vec::new();
        for write in batch {
            // Every journal row comes from the one mapping in core; the rest are projections.
            if let Some(row) = write.row() {
                if let Write::RunStarted { run, at } = write {
                    run_rows.insert(&run.id, run_inserts.len());
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
                        Value::Text(row.body.clone()),
                        // `incident_id`, last so that a `RunIncident` can fill it.
                        Value::OptInt(None),
                    ]);
                }
                if let Write::RunFinished { run_id, end, at } = write {
                    run_updates.push((run_id.clone(), end.status, end.error.clone(), millis(*at)));
                }
                journal.push(vec![
                    Value::Int(journal_seq),
                    Value::Int(millis(row.at)),
                    Value::Text(row.kind.to_string()),
                    Value::OptText(row.event_id),
                    Value::OptText(row.run_id),
                    Value::OptInt(row.incident_id),
                    Value::Text(row.body),
                ]);
                journal_seq += 1;
                continue;
            }
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
                Write::Cursor { name, seq } => cursors.push((name.clone(), Some(*seq))),
                Write::CursorAtLastEvent { name } => cursors.push((name.clone(), None)),
                Write::Snapshot { name, seq, body } => {
                    snapshots.push((name.clone(), (*seq >= 0).then_some(*seq), body.clone()))
                }
                Write::Incident(incident) => incidents.put(incident.id, incident),
                Write::IncidentMember(member) => {
                    let key = (member.incident, member.fingerprint.as_str());
                    let merged = match members.get(&key) {
                        Some(first) => keep_first(first, member),
                        None => member.clone(),
                    };
                    members.put(key, merged);
                }
                Write::Silence(silence) => silences.put(silence.id.as_str(), silence),
                Write::Prune(prune) => prunes.push(prune),
                Write::RunIncident { run_id, incident } => {
                    let row = run_rows
                        .get(run_id.as_str())
                        .and_then(|index| run_inserts.get_mut(*index))
                        .and_then(|row: &mut Vec<Value>| row.last_mut());
                    match row {
                        Some(slot) => *slot = Value::OptInt(Some(*incident)),
                        None => run_links.push((run_id.clone(), *incident)),
                    }
                }
                // Journal rows, handled above.
                Write::Decisions { .. }
                | Write::RunStarted { .. }
                | Write::RunRecord { .. }
                | Write::RunInput { .. }
                | Write::RunFinished { .. }
                | Write::Timeline(_) => {}
            }
        }
        // SQLite's own BEGIN and COMMIT, not sqlx's `Transaction`: after a failed COMMIT (a full disk)
        // SQLite may or may not have rolled back, and sqlx's transaction depth could then fall out of
        // step with it, turning every later BEGIN into a SAVEPOINT inside a transaction that never
        // commits. Here a BEGIN that finds a transaction open fails, and every failure ends in a
        // ROLLBACK (or a fresh connection), so no commit can report success for rows it did not write.
        if state.connection.is_none() {
            state.connection = Some(SqliteConnection::connect_with(&self.writer_options).await?);
        }
        let Some(connection) = state.connection.as_mut() else {
            return Err(Error::Database("the writer connection is closed".into()));
        };
        let written: Result<u64> = async {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *connection)
                .await?;
            insert_rows(
                &mut *connection,
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
                &mut *connection,
                "journal",
                &[
                    "seq",
                    "at",
                    "kind",
                    "event_id",
                    "run_id",
                    "incident_id",
                    "body",
                ],
                "",
                journal,
            )
            .await?;
            insert_rows(
                &mut *connection,
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
                    "incident_id",
                ],
                "",
                run_inserts,
            )
            .await?;
            update_runs(&mut *connection, run_updates).await?;
            // Runs started in an earlier commit: rare, so one statement each.
            for (run_id, incident) in run_links {
                sqlx::query("UPDATE runs SET incident_id = ? WHERE id = ?")
                    .bind(incident)
                    .bind(run_id)
                    .execute(&mut *connection)
                    .await?;
            }
            insert_rows(
                &mut *connection,
                "incidents",
                INCIDENT_COLUMNS,
                INCIDENT_UPSERT,
                incidents.into_values().map(incident_row).collect(),
            )
            .await?;
            insert_rows(
                &mut *connection,
                "incident_members",
                MEMBER_COLUMNS,
                MEMBER_UPSERT,
                members
                    .into_values()
                    .map(|member| member_row(&member))
                    .collect(),
            )
            .await?;
            insert_rows(
                &mut *connection,
                "silences",
                SILENCE_COLUMNS,
                SILENCE_UPSERT,
                silences.into_values().map(silence_row).collect(),
            )
            .await?;
            // "The last event of this commit", for writes made before the sequence numbers were known.
            let last_event_seq = (event_seq > first_event_seq).then_some(event_seq - 1);
            for (name, seq) in cursors {
                let Some(seq) = seq.or(last_event_seq) else {
                    continue;
                };
                sqlx::query("INSERT INTO cursors (name, seq) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq")
                    .bind(name)
                    .bind(seq)
                    .execute(&mut *connection)
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
                .execute(&mut *connection)
                .await?;
            }
            let mut pruned = 0;
            for prune in &prunes {
                pruned += maintenance::prune(connection, prune).await?;
            }
            if !prunes.is_empty() {
                maintenance::vacuum(connection).await?;
            }
            sqlx::query("COMMIT").execute(&mut *connection).await?;
            Ok(pruned)
        }
        .await;
        let pruned = match written {
            Ok(pruned) => pruned,
            Err(error) => {
                self.abandon_transaction(&mut state).await;
                if matches!(error, Error::Full(_)) {
                    self.reserve.release();
                }
                return Err(error);
            }
        };
        committed.pruned = pruned;
        self.activity.committed();
        // The background checkpointer cannot reset the log while a long read (retention planning,
        // a large API page) holds an old snapshot, and big prunes write much to it meanwhile. Past
        // the limit the writer checkpoints itself: no commit can add to the log while it waits for
        // the readers, so it gets to the end. It costs this one commit's caller a pause; a failure
        // is the next commit's to retry.
        if self.wal_max_bytes > 0 && maintenance::file_len(&self.wal) > self.wal_max_bytes {
            if let Some(connection) = state.connection.as_mut() {
                if let Err(error) = maintenance::checkpoint(connection, "TRUNCATE").await {
                    tracing::warn!(%error, "the WAL is past its limit and could not be checkpointed; will retry");
                }
            }
        }
        // Only a committed batch consumes sequence numbers.
        state.next_event_seq = event_seq;
        state.next_journal_seq = journal_seq;
        Ok(committed)
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<EventRecord>> {
        let mut filter = Filter::default();
        if let Some(after) = query.after_seq {
            filter.term("seq > ?", [Value::Int(after)]);
        }
        if let Some(before) = query.before_seq {
            filter.term("seq < ?", [Value::Int(before)]);
        }
        if let Some(source) = &query.source {
            filter.term("source = ?", [Value::Text(source.clone())]);
        }
        if let Some(kind) = query.kind {
            filter.term("kind = ?", [Value::Text(kind.as_str().to_string())]);
            if kind != EventKind::Alert {
                // The condition of the partial index `events_kind`, for the planner to see.
                filter.term("kind <> 'alert'", []);
            }
        }
        if let Some(after) = query.received_after {
            filter.term("received_at >= ?", [Value::Int(millis(after))]);
        }
        if let Some((name, value)) = &query.label {
            filter.term(
                EVENT_HAS_LABEL,
                [Value::Text(name.clone()), Value::Text(value.clone())],
            );
        }
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT seq, body FROM events{} ORDER BY seq {order} LIMIT ?",
            filter.sql()
        );
        let rows = filter
            .bind(&sql, [limit(query.limit)])
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
        let sql = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE event_id = ? ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(event_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn journal_for_run(&self, run_id: &str) -> Result<Vec<JournalEntry>> {
        let sql = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = ? ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(run_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>> {
        let mut filter = Filter::default();
        if let Some(status) = query.status {
            filter.term("status = ?", [Value::Text(status.as_str().to_string())]);
        }
        if let Some(rule) = &query.rule {
            filter.term("rule = ?", [Value::Text(rule.clone())]);
        }
        if let Some(after) = query.started_after {
            filter.term("started_at >= ?", [Value::Int(millis(after))]);
        }
        if let Some(incident) = query.incident {
            filter.term("incident_id = ?", [Value::Int(incident)]);
        }
        if let Some((started_at, id)) = &query.before {
            let started_at = millis(*started_at);
            filter.term(
                "(started_at < ? OR (started_at = ? AND id < ?))",
                [
                    Value::Int(started_at),
                    Value::Int(started_at),
                    Value::Text(id.clone()),
                ],
            );
        }
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs{} ORDER BY started_at DESC, id DESC LIMIT ?",
            filter.sql()
        );
        let rows = filter
            .bind(&sql, [limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(run_record).collect()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?");
        let row = sqlx::query(&sql)
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

    async fn space(&self) -> Option<Space> {
        self.reserve.space(&self.path)
    }

    async fn plan_retention(
        &self,
        policy: &homeostat_core::config::Retention,
        now: DateTime<Utc>,
    ) -> Result<RetentionPlan> {
        let mut connection = self.readers.acquire().await?;
        maintenance::plan(&mut connection, policy, now).await
    }

    async fn backup(&self, to: &Path) -> Result<u64> {
        let mut connection = self.maintenance.lock().await;
        maintenance::backup(&mut connection, to).await
    }

    async fn export_events(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after_seq: i64,
        count: usize,
    ) -> Result<Vec<EventRecord>> {
        let mut connection = self.readers.acquire().await?;
        let (start, end) =
            maintenance::seq_range(&mut connection, "events", "received_at", since, until).await?;
        let rows = sqlx::query("SELECT seq, body FROM events WHERE seq >= ? AND seq < ? AND seq > ? ORDER BY seq LIMIT ?")
            .bind(start)
            .bind(end)
            .bind(after_seq)
            .bind(i64::try_from(count.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(event_record).collect()
    }

    async fn export_journal(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after_seq: i64,
        count: usize,
    ) -> Result<Vec<JournalEntry>> {
        let mut connection = self.readers.acquire().await?;
        let (start, end) =
            maintenance::seq_range(&mut connection, "journal", "at", since, until).await?;
        let sql = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE seq >= ? AND seq < ? AND seq > ? ORDER BY seq LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(start)
            .bind(end)
            .bind(after_seq)
            .bind(i64::try_from(count.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn close(&self) {
        self.checkpointer.abort();
        let mut connection = self.maintenance.lock().await;
        match maintenance::checkpoint(&mut connection, "TRUNCATE").await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "the last WAL checkpoint could not finish: a reader was still active"
            ),
            Err(error) => tracing::warn!(%error, "the last WAL checkpoint failed"),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>> {
        let sql = format!(
            "SELECT {} FROM incidents WHERE id = ?",
            INCIDENT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(incident_record).transpose()
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>> {
        let mut filter = Filter::default();
        if query.open_only {
            // Word for word the condition of the partial index `incidents_open`.
            filter.term("state <> 'resolved'", []);
        }
        if let Some(group_key) = &query.group_key {
            filter.term("group_key = ?", [Value::Text(group_key.clone())]);
        }
        if let Some(after) = query.opened_after {
            filter.term("opened_at >= ?", [Value::Int(millis(after))]);
        }
        if let Some(before) = query.before_id {
            filter.term("id < ?", [Value::Int(before)]);
        }
        if let Some((name, value)) = &query.label {
            filter.term(
                INCIDENT_HAS_LABEL,
                [Value::Text(name.clone()), Value::Text(value.clone())],
            );
        }
        let sql = format!(
            "SELECT {} FROM incidents{} ORDER BY id DESC LIMIT ?",
            INCIDENT_COLUMNS.join(", "),
            filter.sql()
        );
        let rows = filter
            .bind(&sql, [limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(incident_record).collect()
    }

    async fn incident_members(&self, id: IncidentId) -> Result<Vec<Member>> {
        let sql = format!(
            "SELECT {} FROM incident_members WHERE incident_id = ? ORDER BY first_seen, fingerprint",
            MEMBER_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.readers).await?;
        rows.iter().map(member_record).collect()
    }

    async fn incident_timeline(&self, id: IncidentId) -> Result<Vec<JournalEntry>> {
        // Three index lookups; UNION drops an entry reached twice.
        let sql = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE incident_id = ?1 \
             UNION SELECT {JOURNAL_COLUMNS} FROM journal \
             WHERE run_id IN (SELECT id FROM runs WHERE incident_id = ?1) \
             UNION SELECT {JOURNAL_COLUMNS} FROM journal \
             WHERE kind = 'decision' AND event_id IN ( \
                 SELECT first_event_id FROM incident_members WHERE incident_id = ?1 \
                 UNION SELECT last_event_id FROM incident_members WHERE incident_id = ?1 \
                 UNION SELECT event_id FROM runs WHERE incident_id = ?1) \
             ORDER BY seq"
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.readers).await?;
        rows.iter().map(journal_entry).collect()
    }

    async fn incidents_max_id(&self) -> Result<IncidentId> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM incidents")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    async fn silences(&self, include_expired: bool, now: DateTime<Utc>) -> Result<Vec<Silence>> {
        let mut filter = Filter::default();
        if !include_expired {
            filter.term("ends_at > ?", [Value::Int(millis(now))]);
        }
        let sql = format!(
            "SELECT {} FROM silences{} ORDER BY created_at DESC, id DESC",
            SILENCE_COLUMNS.join(", "),
            filter.sql()
        );
        let rows = filter.bind(&sql, []).fetch_all(&self.readers).await?;
        rows.iter().map(silence_record).collect()
    }

    async fn silence(&self, id: &str) -> Result<Option<Silence>> {
        let sql = format!(
            "SELECT {} FROM silences WHERE id = ?",
            SILENCE_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(silence_record).transpose()
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
    let kind: String = row.try_get("kind")?;
    let body: String = row.try_get("body")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("journal entry {seq}"),
        message,
    };
    let body = serde_json::from_str(&body).map_err(|error| corrupt(error.to_string()))?;
    Ok(JournalEntry {
        seq,
        at: from_millis(row.try_get("at")?),
        event_id: row.try_get("event_id")?,
        run_id: row.try_get("run_id")?,
        incident_id: row.try_get("incident_id")?,
        entry: homeostat_core::journal::Entry::from_row(&kind, body)
            .map_err(|error| corrupt(error.to_string()))?,
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
        status: status.parse::<RunStatus>().map_err(corrupt)?,
        dry_run: row.try_get::<i64, _>("dry_run")? != 0,
        started_at: from_millis(row.try_get("started_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(from_millis),
        error: row.try_get("error")?,
        plan: serde_json::from_str(&plan).map_err(|error| corrupt(error.to_string()))?,
        incident_id: row.try_get("incident_id")?,
        id: id.clone(),
    })
}

fn optional_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(from_millis))
}

/// A JSON column read back into its type, or the reason it is corrupt.
fn json_column<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Result<T, String> {
    let text: String = row.try_get(column).map_err(|error| error.to_string())?;
    serde_json::from_str(&text).map_err(|error| format!("`{column}`: {error}"))
}

fn incident_record(row: &SqliteRow) -> Result<Incident> {
    let id: IncidentId = row.try_get("id")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("incident {id}"),
        message,
    };
    let count = |column: &str| -> Result<u32> {
        let value: i64 = row.try_get(column)?;
        u32::try_from(value).map_err(|_| corrupt(format!("`{column}` is {value}")))
    };
    let state: String = row.try_get("state")?;
    Ok(Incident {
        id,
        state: State::parse(&state).ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
        title: row.try_get("title")?,
        group_key: row.try_get("group_key")?,
        labels: json_column(row, "labels").map_err(corrupt)?,
        flapping: row.try_get::<i64, _>("flapping")? != 0,
        escalated: row.try_get::<i64, _>("escalated")? != 0,
        members_firing: count("members_firing")?,
        members_total: count("members_total")?,
        reopened: count("reopened")?,
        started_at: from_millis(row.try_get("started_at")?),
        opened_at: from_millis(row.try_get("opened_at")?),
        acknowledged_at: optional_time(row, "acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        mitigated_at: optional_time(row, "mitigated_at")?,
        resolved_at: optional_time(row, "resolved_at")?,
        resolved_by: row.try_get("resolved_by")?,
        escalated_at: optional_time(row, "escalated_at")?,
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

fn member_record(row: &SqliteRow) -> Result<Member> {
    let incident: IncidentId = row.try_get("incident_id")?;
    let fingerprint: String = row.try_get("fingerprint")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("incident {incident} member {fingerprint}"),
        message,
    };
    let status: String = row.try_get("status")?;
    Ok(Member {
        incident,
        status: match status.as_str() {
            "firing" => Status::Firing,
            "resolved" => Status::Resolved,
            _ => return Err(corrupt(format!("unknown status `{status}`"))),
        },
        source: row.try_get("source")?,
        labels: json_column(row, "labels").map_err(corrupt)?,
        annotations: json_column(row, "annotations").map_err(corrupt)?,
        first_event_id: row.try_get("first_event_id")?,
        last_event_id: row.try_get("last_event_id")?,
        first_seen: from_millis(row.try_get("first_seen")?),
        last_seen: from_millis(row.try_get("last_seen")?),
        starts_at: optional_time(row, "starts_at")?,
        generator_url: row.try_get("generator_url")?,
        fingerprint: fingerprint.clone(),
    })
}

fn silence_record(row: &SqliteRow) -> Result<Silence> {
    let id: String = row.try_get("id")?;
    let matchers = json_column(row, "matchers").map_err(|message| Error::Corrupt {
        id: format!("silence {id}"),
        message,
    })?;
    Ok(Silence {
        matchers,
        starts_at: from_millis(row.try_get("starts_at")?),
        ends_at: from_millis(row.try_get("ends_at")?),
        created_by: row.try_get("created_by")?,
        comment: row.try_get("comment")?,
        created_at: from_millis(row.try_get("created_at")?),
        expired_by: row.try_get("expired_by")?,
        id,
    })
}
