//! The PostgreSQL backend: one writer connection that holds the store's advisory lock, a small
//! pool of readers, embedded migrations; the same rows as SQLite's (`sql.rs`).
//!
//! Sequence numbers come from the writer's counters, not from PostgreSQL sequences: a sequence
//! hands out numbers to transactions that later roll back, and the journal must show no gaps.
//! One writer per database is what keeps the counters true, hence the lock
//! ([`PostgresStore::lock_exclusive`]).

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member};
use homeostat_core::EventKind;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use tokio::sync::Mutex;

#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use crate::retention::{self, Sql};
use crate::sql::{self, Filter, Value, JOURNAL_COLUMNS, RUN_COLUMNS};
use crate::{
    Committed, Error, EventQuery, EventRecord, IncidentCounts, IncidentQuery, JournalEntry, Result,
    RetentionPlan, RunQuery, RunRecord, Store, Write,
};

/// Numbered migrations, applied in order; the table `schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/postgres/0001_init.sql")];

/// The advisory lock a daemon holds on its store for as long as it runs (any bigint names one;
/// this is "homeostat" in ASCII, truncated).
const LOCK_KEY: i64 = 0x686f_6d65_6f73_7461;

/// How often, and how far apart, a starting daemon asks for the lock: three seconds in all.
const LOCK_ATTEMPTS: u32 = 15;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

pub struct PostgresStore {
    /// Where the database is, without the password, for messages.
    location: String,
    options: PgConnectOptions,
    writer: Mutex<WriterState>,
    readers: PgPool,
}

struct WriterState {
    /// `None` after a failure that closed it and could not open it again; the next commit retries.
    connection: Option<PgConnection>,
    /// Whether this store holds the advisory lock, which a reopened connection must take again.
    locked: bool,
    next_event_seq: i64,
    next_journal_seq: i64,
}

/// `host:port/database` of the options: enough to tell which database, and nothing secret.
fn location(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// migrates it. Error messages name the host, port and database, never the password.
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|error| Error::Open {
            path: "the PostgreSQL url".into(),
            message: match error {
                // The parser's message may quote the url.
                sqlx::Error::Configuration(_) => {
                    "it is not a valid `postgres://user:password@host:port/database` url".into()
                }
                other => other.to_string(),
            },
        })?;
        let location = location(&options);
        let open_error = |error: sqlx::Error| Error::Open {
            path: location.clone(),
            message: error.to_string(),
        };
        let mut connection = PgConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        migrate(&mut connection).await?;
        let (next_event_seq, next_journal_seq) = next_seqs(&mut connection).await?;
        let readers = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        Ok(Self {
            location,
            options,
            writer: Mutex::new(WriterState {
                connection: Some(connection),
                locked: false,
                next_event_seq,
                next_journal_seq,
            }),
            readers,
        })
    }

    /// Where the store is, without the password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Leaves the writer with no transaction open after a failed commit: a ROLLBACK, or when even
    /// that fails, a fresh connection (closing one rolls back).
    async fn abandon_transaction(&self, state: &mut WriterState) {
        if let Some(connection) = state.connection.as_mut() {
            match sqlx::query("ROLLBACK").execute(&mut *connection).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, "rollback after a failed commit failed; reopening the writer connection")
                }
            }
        }
        state.connection = None;
        if let Err(error) = self.reconnect(state).await {
            tracing::error!(%error, "cannot reopen the writer connection; the next commit tries again");
        }
    }

    /// Opens the writer's connection again, holding the lock when the store holds it (a connection
    /// that cannot take it is not used), and counts the sequence numbers on from the rows: a
    /// COMMIT whose answer was lost with the connection may have committed.
    async fn reconnect(&self, state: &mut WriterState) -> Result<()> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        if state.locked && !try_lock(&mut connection).await? {
            return Err(self.locked_error());
        }
        let (next_event_seq, next_journal_seq) = next_seqs(&mut connection).await?;
        state.next_event_seq = next_event_seq;
        state.next_journal_seq = next_journal_seq;
        state.connection = Some(connection);
        Ok(())
    }

    fn locked_error(&self) -> Error {
        Error::Locked(format!(
            "another homeostat holds the PostgreSQL store `{}` (advisory lock {LOCK_KEY}); \
             stop it, or give this one a database of its own",
            self.location
        ))
    }

    /// Takes the store's session-level advisory lock on the writer connection, for as long as
    /// this store lives (a connection the writer must open again takes it again): one daemon per
    /// store, since the sequence numbers are counted by one writer. Fails when another session
    /// holds it still after three seconds.
    pub async fn lock_exclusive(&self) -> Result<()> {
        let mut state = self.writer.lock().await;
        if state.locked {
            return Ok(());
        }
        if state.connection.is_none() {
            self.reconnect(&mut state).await?;
        }
        let Some(connection) = state.connection.as_mut() else {
            return Err(Error::Database("the writer connection is closed".into()));
        };
        // A daemon killed a moment ago holds the lock until the server sees its socket close:
        // a restart waits that long, not for a daemon that runs.
        let mut attempts = 0;
        while !try_lock(connection).await? {
            attempts += 1;
            if attempts >= LOCK_ATTEMPTS {
                return Err(self.locked_error());
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
        // Another daemon may have written before this one took the lock.
        let (next_event_seq, next_journal_seq) = next_seqs(connection).await?;
        state.next_event_seq = next_event_seq;
        state.next_journal_seq = next_journal_seq;
        state.locked = true;
        Ok(())
    }
}

/// The next event and journal sequence numbers after the rows stored.
async fn next_seqs(connection: &mut PgConnection) -> Result<(i64, i64)> {
    let events = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")
        .fetch_one(&mut *connection)
        .await?;
    let journal = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM journal")
        .fetch_one(&mut *connection)
        .await?;
    Ok((events, journal))
}

async fn try_lock(connection: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *connection)
        .await?)
}

/// Applies the migrations not yet applied, each in its own transaction (PostgreSQL's DDL is
/// transactional), under a transaction-level advisory lock so two starting daemons do not race.
async fn migrate(connection: &mut PgConnection) -> Result<()> {
    let failed = |version: usize| {
        move |error: sqlx::Error| Error::Migration {
            version,
            message: error.to_string(),
        }
    };
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .execute(&mut *connection)
        .await
        .map_err(failed(0))?;
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let version = index + 1;
        let mut transaction = connection.begin().await.map_err(failed(version))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY + 1)
            .execute(&mut *transaction)
            .await
            .map_err(failed(version))?;
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)",
        )
        .bind(version as i64)
        .fetch_one(&mut *transaction)
        .await
        .map_err(failed(version))?;
        if applied {
            continue;
        }
        sqlx::raw_sql(migration)
            .execute(&mut *transaction)
            .await
            .map_err(failed(version))?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version as i64)
            .execute(&mut *transaction)
            .await
            .map_err(failed(version))?;
        transaction.commit().await.map_err(failed(version))?;
    }
    Ok(())
}

/// The shared SQL, written with `?`, with PostgreSQL's numbered placeholders instead. None of our
/// statements has a `?` in a literal or a JSON operator.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut index = 0;
    for character in sql.chars() {
        if character == '?' {
            index += 1;
            out.push('$');
            out.push_str(&index.to_string());
        } else {
            out.push(character);
        }
    }
    out
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

fn bind(query: Query<'_>, value: Value) -> Query<'_> {
    match value {
        Value::Int(v) => query.bind(v),
        Value::OptInt(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::OptText(v) => query.bind(v),
        Value::Flag(v) => query.bind(v),
    }
}

/// A query with a filter's values bound, then `extra`.
fn filtered<'q>(filter: Filter, sql: &'q str, extra: impl IntoIterator<Item = Value>) -> Query<'q> {
    filter
        .values
        .into_iter()
        .chain(extra)
        .fold(sqlx::query(sql), bind)
}

/// Inserts rows with multi-row statements in fixed chunk sizes.
async fn insert_rows(
    connection: &mut PgConnection,
    table: &str,
    columns: &[&str],
    suffix: &str,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let mut rows = rows.into_iter();
    let mut remaining = rows.len();
    while remaining > 0 {
        let size = sql::chunk(remaining);
        let text = numbered(&sql::insert_sql(table, columns, size, suffix));
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

async fn update_runs(connection: &mut PgConnection, updates: Vec<Vec<Value>>) -> Result<()> {
    let mut updates = updates.into_iter();
    let mut remaining = updates.len();
    while remaining > 0 {
        let size = sql::chunk(remaining);
        let text = numbered(&sql::update_runs_sql(size));
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

sql::columns_for!(PgRow);

#[async_trait]
impl Sql for PgConnection {
    async fn ints(&mut self, sql: &str, values: Vec<Value>) -> Result<Option<Vec<Option<i64>>>> {
        let text = numbered(sql);
        let row = values
            .into_iter()
            .fold(sqlx::query(&text), bind)
            .fetch_optional(&mut *self)
            .await?;
        let Some(row) = row else { return Ok(None) };
        (0..row.len())
            .map(|index| Ok(row.try_get::<Option<i64>, _>(index)?))
            .collect::<Result<_>>()
            .map(Some)
    }

    async fn texts(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<String>> {
        let text = numbered(sql);
        let rows = values
            .into_iter()
            .fold(sqlx::query(&text), bind)
            .fetch_all(&mut *self)
            .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        let text = numbered(sql);
        Ok(values
            .into_iter()
            .fold(sqlx::query(&text), bind)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }
}

/// A label among the JSON labels, as text; the body is JSON text, cast where a filter reads it.
const INCIDENT_HAS_LABEL: &str = "(incidents.labels::jsonb ->> ?) = ?";
const EVENT_HAS_LABEL: &str = "(events.body::jsonb -> 'labels' ->> ?) = ?";

/// The bytes of the store's tables with their indexes and TOAST, as PostgreSQL counts them.
/// Deleted rows' space is reused by PostgreSQL, not given back, so this does not fall after a
/// prune until a `VACUUM FULL`.
async fn used_bytes(connection: &mut PgConnection) -> Result<u64> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' \
         AND c.relname IN ('events', 'journal', 'runs', 'cursors', 'snapshots', 'incidents', \
         'incident_members', 'silences')",
    )
    .fetch_one(&mut *connection)
    .await?;
    Ok(bytes.max(0) as u64)
}

#[async_trait]
impl Store for PostgresStore {
    async fn commit(&self, batch: &[Write]) -> Result<Committed> {
        let mut state = self.writer.lock().await;
        // Before the rows are numbered: a reconnect counts on from what is stored.
        if state.connection.is_none() {
            self.reconnect(&mut state).await?;
        }
        let sorted = sql::sort(batch, state.next_event_seq, state.next_journal_seq);
        let (next_event_seq, next_journal_seq) = (sorted.next_event_seq, sorted.next_journal_seq);
        let mut committed = sorted.committed.clone();
        let Some(connection) = state.connection.as_mut() else {
            return Err(Error::Database("the writer connection is closed".into()));
        };
        let written: Result<u64> = async {
            sqlx::query("BEGIN").execute(&mut *connection).await?;
            insert_rows(connection, "events", sql::EVENT_COLUMNS, "", sorted.events).await?;
            insert_rows(
                connection,
                "journal",
                sql::JOURNAL_INSERT_COLUMNS,
                "",
                sorted.journal,
            )
            .await?;
            insert_rows(
                connection,
                "runs",
                sql::RUN_INSERT_COLUMNS,
                "",
                sorted.run_inserts,
            )
            .await?;
            update_runs(connection, sorted.run_updates).await?;
            for (run_id, incident) in sorted.run_links {
                sqlx::query("UPDATE runs SET incident_id = $1 WHERE id = $2")
                    .bind(incident)
                    .bind(run_id)
                    .execute(&mut *connection)
                    .await?;
            }
            insert_rows(
                connection,
                "incidents",
                sql::INCIDENT_COLUMNS,
                sql::INCIDENT_UPSERT,
                sorted.incidents,
            )
            .await?;
            insert_rows(
                connection,
                "incident_members",
                sql::MEMBER_COLUMNS,
                sql::MEMBER_UPSERT,
                sorted.members,
            )
            .await?;
            insert_rows(
                connection,
                "silences",
                sql::SILENCE_COLUMNS,
                sql::SILENCE_UPSERT,
                sorted.silences,
            )
            .await?;
            let cursor_upsert = numbered(sql::CURSOR_UPSERT);
            for (name, seq) in sorted.cursors {
                sqlx::query(&cursor_upsert)
                    .bind(name)
                    .bind(seq)
                    .execute(&mut *connection)
                    .await?;
            }
            let snapshot_upsert = numbered(sql::SNAPSHOT_UPSERT);
            for (name, seq, body) in sorted.snapshots {
                sqlx::query(&snapshot_upsert)
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
            sqlx::query("COMMIT").execute(&mut *connection).await?;
            Ok(pruned)
        }
        .await;
        match written {
            Ok(pruned) => committed.pruned = pruned,
            Err(error) => {
                self.abandon_transaction(&mut state).await;
                return Err(error);
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
        let text = numbered(&format!(
            "SELECT seq, body FROM events{} ORDER BY seq {order} LIMIT ?",
            filter.sql()
        ));
        let rows = filtered(filter, &text, [sql::limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::event_record).collect()
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        let row = sqlx::query("SELECT seq, body FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::event_record).transpose()
    }

    async fn journal_for_event(&self, event_id: &str) -> Result<Vec<JournalEntry>> {
        let text =
            format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE event_id = $1 ORDER BY seq");
        let rows = sqlx::query(&text)
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
        let text = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal \
             WHERE kind = 'decision' AND event_id = ANY($1) ORDER BY seq"
        );
        let rows = sqlx::query(&text)
            .bind(event_ids)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::journal_entry).collect()
    }

    async fn journal_for_run(&self, run_id: &str) -> Result<Vec<JournalEntry>> {
        let text = format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE run_id = $1 ORDER BY seq");
        let rows = sqlx::query(&text)
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
        let text = numbered(&format!(
            "SELECT {RUN_COLUMNS} FROM runs{} ORDER BY started_at DESC, id DESC LIMIT ?",
            filter.sql()
        ));
        let rows = filtered(filter, &text, [sql::limit(query.limit)])
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(sql::run_record).collect()
    }

    async fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let text = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(&text)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::run_record).transpose()
    }

    async fn cursor(&self, name: &str) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn snapshot(&self, name: &str) -> Result<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT seq, body FROM snapshots WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| Ok((row.try_get("seq")?, row.try_get("body")?)))
            .transpose()
    }

    async fn last_event(&self, source: &str) -> Result<Option<EventRecord>> {
        let row =
            sqlx::query("SELECT seq, body FROM events WHERE source = $1 ORDER BY seq DESC LIMIT 1")
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

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>> {
        let text = format!(
            "SELECT {} FROM incidents WHERE id = $1",
            sql::INCIDENT_COLUMNS.join(", ")
        );
        let row = sqlx::query(&text)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::incident_record).transpose()
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>> {
        let mut filter = Filter::default();
        if query.open_only {
            // The condition of the partial index `incidents_open`.
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
        let text = numbered(&format!(
            "SELECT {} FROM incidents{} ORDER BY id DESC LIMIT ?",
            sql::INCIDENT_COLUMNS.join(", "),
            filter.sql()
        ));
        let rows = filtered(filter, &text, [sql::limit(query.limit)])
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
        let text = format!(
            "SELECT {} FROM incident_members WHERE incident_id = $1 ORDER BY first_seen, fingerprint",
            sql::MEMBER_COLUMNS.join(", ")
        );
        let rows = sqlx::query(&text).bind(id).fetch_all(&self.readers).await?;
        rows.iter().map(sql::member_record).collect()
    }

    async fn incident_timeline(&self, id: IncidentId) -> Result<Vec<JournalEntry>> {
        let text = numbered(&sql::incident_timeline_sql());
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
        let text = numbered(&format!(
            "SELECT {} FROM silences{} ORDER BY created_at DESC, id DESC",
            sql::SILENCE_COLUMNS.join(", "),
            filter.sql()
        ));
        let rows = filtered(filter, &text, []).fetch_all(&self.readers).await?;
        rows.iter().map(sql::silence_record).collect()
    }

    async fn silence(&self, id: &str) -> Result<Option<Silence>> {
        let text = format!(
            "SELECT {} FROM silences WHERE id = $1",
            sql::SILENCE_COLUMNS.join(", ")
        );
        let row = sqlx::query(&text)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(sql::silence_record).transpose()
    }

    async fn plan_retention(
        &self,
        policy: &homeostat_core::config::Retention,
        now: DateTime<Utc>,
    ) -> Result<RetentionPlan> {
        let mut connection = self.readers.acquire().await?;
        let bytes_before = used_bytes(&mut connection).await?;
        retention::plan(&mut *connection, policy, now, bytes_before).await
    }

    /// Refused: a PostgreSQL database is backed up with PostgreSQL's tools, which know its
    /// server's files, roles and point-in-time recovery; a copy through this connection would be
    /// a poorer `pg_dump`.
    async fn backup(&self, _to: &std::path::Path) -> Result<u64> {
        Err(Error::Backup(format!(
            "the store is the PostgreSQL database `{}`, which homeostat does not copy; \
             consider `pg_dump --format=custom --file=homeostat.dump` against it, or the \
             server's continuous archiving",
            self.location
        )))
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
        let rows = sqlx::query(
            "SELECT seq, body FROM events WHERE seq >= $1 AND seq < $2 AND seq > $3 \
             ORDER BY seq LIMIT $4",
        )
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
        let text = format!(
            "SELECT {JOURNAL_COLUMNS} FROM journal WHERE seq >= $1 AND seq < $2 AND seq > $3 \
             ORDER BY seq LIMIT $4"
        );
        let rows = sqlx::query(&text)
            .bind(start)
            .bind(end)
            .bind(after_seq)
            .bind(i64::try_from(count.max(1)).unwrap_or(i64::MAX))
            .fetch_all(&mut *connection)
            .await?;
        rows.iter().map(sql::journal_entry).collect()
    }

    async fn lock_exclusive(&self) -> Result<()> {
        PostgresStore::lock_exclusive(self).await
    }

    /// Closes the connections; the advisory lock goes with the writer's session.
    async fn close(&self) {
        if let Some(connection) = self.writer.lock().await.connection.take() {
            if let Err(error) = connection.close().await {
                tracing::warn!(%error, "closing the writer connection failed");
            }
        }
        self.readers.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            super::numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"
        );
    }
}
