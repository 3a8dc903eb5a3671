//! The SQLite backend: WAL mode, one writer connection, a small pool of readers, embedded migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::config::Synchronous;
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member};
use homeostat_core::EventKind;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};

use tokio::sync::Mutex;

pub mod lock;
use crate::retention;
use crate::sql::{self, Filter, Value, JOURNAL_COLUMNS, RUN_COLUMNS};

mod maintenance;

use crate::{
    Committed, Error, EventQuery, EventRecord, IncidentCounts, IncidentQuery, JournalEntry, Result,
    RetentionPlan, RunQuery, RunRecord, Space, Store, Write,
};

/// Numbered migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_snapshots.sql"),
    include_str!("../../migrations/sqlite/0003_runbooks.sql"),
    include_str!("../../migrations/sqlite/0004_incidents.sql"),
];

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
        // The path tried, absolute: a relative one says nothing of where it was looked for.
        let open_error = |error: sqlx::Error| Error::Open {
            path: std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
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

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

fn bind(query: Query<'_>, value: Value) -> Query<'_> {
    match value {
        Value::Int(v) => query.bind(v),
        Value::OptInt(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::OptText(v) => query.bind(v),
        Value::Flag(v) => query.bind(v),
    }
}

/// A query with a filter's values bound, then `extra` (for clauses after the `WHERE`, such as
/// `LIMIT`).
fn filtered<'q>(filter: Filter, sql: &'q str, extra: impl IntoIterator<Item = Value>) -> Query<'q> {
    filter
        .values
        .into_iter()
        .chain(extra)
        .fold(sqlx::query(sql), bind)
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
        let size = sql::chunk(remaining);
        let text = sql::insert_sql(table, columns, size, suffix);
        let query = rows
            .by_ref()
            .take(size)
            .flatten()
            .fold(sqlx::query(&text), bind);
        query.execute(&mut *connection).await?;
        remaining -= size;
    }
    Ok(())
}

/// Marks runs finished, a chunk of them per statement.
async fn update_runs(connection: &mut SqliteConnection, updates: Vec<Vec<Value>>) -> Result<()> {
    let mut updates = updates.into_iter();
    let mut remaining = updates.len();
    while remaining > 0 {
        let size = sql::chunk(remaining);
        let text = sql::update_runs_sql(size);
        let query = updates
            .by_ref()
            .take(size)
            .flatten()
            .fold(sqlx::query(&text), bind);
        query.execute(&mut *connection).await?;
        remaining -= size;
    }
    Ok(())
}

sql::columns_for!(SqliteRow);

/// `json_each` rather than `json_extract`: a label name needs no quoting as a JSON path.
const INCIDENT_HAS_LABEL: &str =
    "EXISTS (SELECT 1 FROM json_each(incidents.labels) WHERE key = ? AND value = ?)";
const EVENT_HAS_LABEL: &str =
    "EXISTS (SELECT 1 FROM json_each(events.body, '$.labels') WHERE key = ? AND value = ?)";

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, batch: &[Write]) -> Result<Committed> {
        let mut state = self.writer.lock().await;
        let sorted = sql::sort(batch, state.next_event_seq, state.next_journal_seq);
        let sql::Sorted {
            mut committed,
            next_event_seq,
            next_journal_seq,
            ..
        } = sorted;
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
                sql::EVENT_COLUMNS,
                "",
                sorted.events,
            )
            .await?;
            insert_rows(
                &mut *connection,
                "journal",
                sql::JOURNAL_INSERT_COLUMNS,
                "",
                sorted.journal,
            )
            .await?;
            insert_rows(
                &mut *connection,
                "runs",
                sql::RUN_INSERT_COLUMNS,
                "",
                sorted.run_inserts,
            )
            .await?;
            update_runs(&mut *connection, sorted.run_updates).await?;
            // Runs started in an earlier commit: rare, so one statement each.
            for (run_id, incident) in sorted.run_links {
                sqlx::query("UPDATE runs SET incident_id = ? WHERE id = ?")
                    .bind(incident)
                    .bind(run_id)
                    .execute(&mut *connection)
                    .await?;
            }
            insert_rows(
                &mut *connection,
                "incidents",
                sql::INCIDENT_COLUMNS,
                sql::INCIDENT_UPSERT,
                sorted.incidents,
            )
            .await?;
            insert_rows(
                &mut *connection,
                "incident_members",
                sql::MEMBER_COLUMNS,
                sql::MEMBER_UPSERT,
                sorted.members,
            )
            .await?;
            insert_rows(
                &mut *connection,
                "silences",
                sql::SILENCE_COLUMNS,
                sql::SILENCE_UPSERT,
                sorted.silences,
            )
            .await?;
            for (name, seq) in sorted.cursors {
                sqlx::query(sql::CURSOR_UPSERT)
                    .bind(name)
                    .bind(seq)
                    .execute(&mut *connection)
                    .await?;
            }
            for (name, seq, body) in sorted.snapshots {
                sqlx::query(sql::SNAPSHOT_UPSERT)
                    .bind(name)
                    .bind(seq)
                    .bind(body)
                    .execute(&mut *connection)
                    .await?;
            }
            let mut pruned = 0;
            for prune in &sorted.prunes {
                pruned += retention::prune(connection, prune).await?;
            }
            if !sorted.prunes.is_empty() {
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
        // Past half its limit (what the log holds, as the checkpointer's last pass counted it: the
        // file keeps its size after a RESTART), the writer checkpoints the WAL itself, between two of its own
        // transactions: no commit can add to the log meanwhile, and it needs no lock that a
        // commit holds, so it gets to the end and the next commit writes the log from its start
        // (readers on an older snapshot are waited for). It costs this commit's caller the copy
        // of what the checkpointer's passive passes left: below three quarters of the limit, it
        // is done only once the checkpointer has handed it over, right after a pass (see
        // `maintenance::checkpointer`).
        if self.wal_max_bytes > 0
            && (self.activity.take_hand_off()
                || maintenance::file_len(&self.wal) > self.wal_max_bytes / 4 * 3)
        {
            if let Some(connection) = state.connection.as_mut() {
                maintenance::checkpoint_in_writer(connection, &self.wal, self.wal_max_bytes).await;
            }
        }
        // Only a committed batch consumes sequence numbers.
        state.next_event_seq = next_event_seq;
        state.next_journal_seq = next_journal_seq;
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
            filter.term("received_at >= ?", [Value::Int(sql::millis(after))]);
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
        let rows = filtered(filter, &sql, [sql::limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::event_record).collect()
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        let row = sqlx::query("SELECT seq, body FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::event_record).transpose()
    }

    async fn journal_for_event(&self, event_id: &str) -> Result<Vec<JournalEntry>> {
        let sql = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE event_id = ? ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(event_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::journal_entry).collect()
    }

    async fn decisions_for_events(&self, event_ids: &[String]) -> Result<Vec<JournalEntry>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        // One lookup of the `journal_event` index per id; a list is at most 1,000 events.
        let marks = vec!["?"; event_ids.len()].join(", ");
        let sql = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal \
             WHERE kind = 'decision' AND event_id IN ({marks}) ORDER BY seq"
        );
        let mut query = sqlx::query(&sql);
        for id in event_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.readers).await?;
        rows.iter().map(sql::journal_entry).collect()
    }

    async fn journal_for_run(&self, run_id: &str) -> Result<Vec<JournalEntry>> {
        let sql = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = ? ORDER BY seq");
        let rows = sqlx::query(&sql)
            .bind(run_id)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::journal_entry).collect()
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
            filter.term("started_at >= ?", [Value::Int(sql::millis(after))]);
        }
        if let Some(incident) = query.incident {
            filter.term("incident_id = ?", [Value::Int(incident)]);
        }
        if let Some((started_at, id)) = &query.before {
            let started_at = sql::millis(*started_at);
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
        let rows = filtered(filter, &sql, [sql::limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::run_record).collect()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::run_record).transpose()
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
        row.as_ref().map(sql::event_record).transpose()
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
        let bytes_before = maintenance::used_bytes(&mut connection).await?;
        retention::plan(&mut *connection, policy, now, bytes_before).await
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
            retention::seq_range(&mut *connection, "events", "received_at", since, until).await?;
        let rows = sqlx::query("SELECT seq, body FROM events WHERE seq >= ? AND seq < ? AND seq > ? ORDER BY seq LIMIT ?")
            .bind(start)
            .bind(end)
            .bind(after_seq)
            .bind(i64::try_from(count.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(sql::event_record).collect()
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
            retention::seq_range(&mut *connection, "journal", "at", since, until).await?;
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
        rows.iter().map(sql::journal_entry).collect()
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
            sql::INCIDENT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::incident_record).transpose()
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>> {
        let mut filter = Filter::default();
        if query.open_only {
            // Word for word the condition of the partial index `incidents_open`.
            filter.term("state <> 'resolved'", []);
        }
        if let Some(state) = query.state {
            filter.term("state = ?", [Value::Text(state.as_str().to_string())]);
        }
        if let Some(group_key) = &query.group_key {
            filter.term("group_key = ?", [Value::Text(group_key.clone())]);
        }
        if let Some(after) = query.opened_after {
            filter.term("opened_at >= ?", [Value::Int(sql::millis(after))]);
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
            sql::INCIDENT_COLUMNS.join(", "),
            filter.sql()
        );
        let rows = filtered(filter, &sql, [sql::limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::incident_record).collect()
    }

    async fn incident_counts(&self) -> Result<IncidentCounts> {
        let open: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM incidents WHERE state <> 'resolved' GROUP BY state",
        )
        .fetch_all(&self.readers)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incidents")
            .fetch_one(&self.readers)
            .await?;
        IncidentCounts::from_rows(open, total)
    }

    async fn incident_members(&self, id: IncidentId) -> Result<Vec<Member>> {
        let sql = format!(
            "SELECT {} FROM incident_members WHERE incident_id = ? ORDER BY first_seen, fingerprint",
            sql::MEMBER_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&sql).bind(id).fetch_all(&self.readers).await?;
        rows.iter().map(sql::member_record).collect()
    }

    async fn incident_timeline(&self, id: IncidentId) -> Result<Vec<JournalEntry>> {
        let text = sql::incident_timeline_sql();
        let rows = (0..sql::INCIDENT_TIMELINE_BINDS)
            .fold(sqlx::query(&text), |query, _| query.bind(id))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::journal_entry).collect()
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
            filter.term("ends_at > ?", [Value::Int(sql::millis(now))]);
        }
        let sql = format!(
            "SELECT {} FROM silences{} ORDER BY created_at DESC, id DESC",
            sql::SILENCE_COLUMNS.join(", "),
            filter.sql()
        );
        let rows = filtered(filter, &sql, []).fetch_all(&self.readers).await?;
        rows.iter().map(sql::silence_record).collect()
    }

    async fn silence(&self, id: &str) -> Result<Option<Silence>> {
        let sql = format!(
            "SELECT {} FROM silences WHERE id = ?",
            sql::SILENCE_COLUMNS.join(", ")
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::silence_record).transpose()
    }
}
