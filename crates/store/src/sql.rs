//! What the SQL backends share: a batch sorted into the rows each table receives, the columns and
//! upserts of the projections, and the records read back from rows. Both schemas store times as
//! milliseconds and JSON as text, so one mapping serves SQLite and PostgreSQL; only the statements
//! that run it differ.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use homeostat_core::incident::silence::Silence;
use homeostat_core::incident::{Incident, IncidentId, Member, State};
use homeostat_core::Status;

use crate::{
    Committed, Error, EventRecord, JournalEntry, Prune, Result, RunRecord, RunStatus, Write,
};

pub(crate) fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn from_millis(value: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(value).single().unwrap_or_default()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// A value bound to a statement; keeps the batching code independent of column types and of the
/// backend.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Flag(bool),
}

/// `LIMIT` for a query's `limit`: 0 reads one row, as the other queries do.
pub(crate) fn limit(limit: usize) -> Value {
    Value::Int(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
}

/// Rows per multi-row INSERT. A few fixed sizes keep the prepared-statement cache small.
pub(crate) const CHUNKS: &[usize] = &[256, 128, 64, 32, 16, 8, 4, 2, 1];

/// The largest chunk size that fits in `remaining`.
pub(crate) fn chunk(remaining: usize) -> usize {
    *CHUNKS.iter().find(|size| **size <= remaining).unwrap_or(&1)
}

/// A multi-row INSERT with `?` placeholders (a backend that numbers them rewrites them).
pub(crate) fn insert_sql(table: &str, columns: &[&str], rows: usize, suffix: &str) -> String {
    let placeholders = format!("({})", vec!["?"; columns.len()].join(","));
    format!(
        "INSERT INTO {table} ({}) VALUES {}{suffix}",
        columns.join(","),
        vec![placeholders; rows].join(",")
    )
}

/// Marks runs finished with one `UPDATE ... FROM (VALUES ...)` per chunk instead of one per run.
pub(crate) fn update_runs_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?)"; rows].join(", ");
    format!(
        "WITH finished (id, status, error, finished_at) AS (VALUES {values}) \
         UPDATE runs SET status = finished.status, error = finished.error, finished_at = finished.finished_at \
         FROM finished WHERE runs.id = finished.id"
    )
}

/// A `WHERE` clause made of the filters that are set, with `?` placeholders. Terms like
/// `(? IS NULL OR x = ?)` would hide the indexes from the planners, and a partial index is only
/// used when the query repeats its condition.
#[derive(Default)]
pub(crate) struct Filter {
    terms: Vec<&'static str>,
    pub(crate) values: Vec<Value>,
}

impl Filter {
    pub(crate) fn term(&mut self, sql: &'static str, values: impl IntoIterator<Item = Value>) {
        self.terms.push(sql);
        self.values.extend(values);
    }

    pub(crate) fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }
}

/// One value per key, the last one put, in the order keys first appeared: what a batch of upserts
/// leaves, written as one row per key.
pub(crate) struct Latest<K, V> {
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

pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "seq",
    "id",
    "source",
    "kind",
    "status",
    "fingerprint",
    "received_at",
    "body",
];

pub(crate) const JOURNAL_INSERT_COLUMNS: &[&str] = &[
    "seq",
    "at",
    "kind",
    "event_id",
    "run_id",
    "incident_id",
    "body",
];

pub(crate) const JOURNAL_COLUMNS: &str = "seq, at, kind, event_id, run_id, incident_id, body";

pub(crate) const RUN_INSERT_COLUMNS: &[&str] = &[
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
];

pub(crate) const RUN_COLUMNS: &str = "id, rule, runbook, started_by, target, event_id, status, \
     dry_run, started_at, finished_at, error, plan, incident_id";

pub(crate) const INCIDENT_COLUMNS: &[&str] = &[
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

pub(crate) const INCIDENT_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
     title = excluded.title, group_key = excluded.group_key, labels = excluded.labels, \
     flapping = excluded.flapping, escalated = excluded.escalated, \
     members_firing = excluded.members_firing, members_total = excluded.members_total, \
     reopened = excluded.reopened, started_at = excluded.started_at, opened_at = excluded.opened_at, \
     acknowledged_at = excluded.acknowledged_at, acknowledged_by = excluded.acknowledged_by, \
     mitigated_at = excluded.mitigated_at, resolved_at = excluded.resolved_at, \
     resolved_by = excluded.resolved_by, escalated_at = excluded.escalated_at, \
     updated_at = excluded.updated_at";

pub(crate) const MEMBER_COLUMNS: &[&str] = &[
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
pub(crate) const MEMBER_UPSERT: &str = " ON CONFLICT (incident_id, fingerprint) DO UPDATE SET \
     source = excluded.source, status = excluded.status, labels = excluded.labels, \
     annotations = excluded.annotations, last_event_id = excluded.last_event_id, \
     last_seen = excluded.last_seen, \
     starts_at = COALESCE(incident_members.starts_at, excluded.starts_at), \
     generator_url = excluded.generator_url";

pub(crate) const SILENCE_COLUMNS: &[&str] = &[
    "id",
    "matchers",
    "starts_at",
    "ends_at",
    "created_by",
    "comment",
    "created_at",
    "expired_by",
];

pub(crate) const SILENCE_UPSERT: &str = " ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, \
     starts_at = excluded.starts_at, ends_at = excluded.ends_at, created_by = excluded.created_by, \
     comment = excluded.comment, created_at = excluded.created_at, expired_by = excluded.expired_by";

pub(crate) const CURSOR_UPSERT: &str = "INSERT INTO cursors (name, seq) VALUES (?, ?) \
     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq";

pub(crate) const SNAPSHOT_UPSERT: &str =
    "INSERT INTO snapshots (name, seq, body) VALUES (?, ?, ?) \
     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, body = excluded.body";

/// The timeline of an incident, three index lookups; UNION drops an entry reached twice. Its one
/// parameter, the incident, is bound `INCIDENT_TIMELINE_BINDS` times.
pub(crate) fn incident_timeline_sql() -> String {
    format!(
        "SELECT {JOURNAL_COLUMNS} FROM journal WHERE incident_id = ? \
         UNION SELECT {JOURNAL_COLUMNS} FROM journal \
         WHERE run_id IN (SELECT id FROM runs WHERE incident_id = ?) \
         UNION SELECT {JOURNAL_COLUMNS} FROM journal \
         WHERE kind = 'decision' AND event_id IN ( \
             SELECT first_event_id FROM incident_members WHERE incident_id = ? \
             UNION SELECT last_event_id FROM incident_members WHERE incident_id = ? \
             UNION SELECT event_id FROM runs WHERE incident_id = ?) \
         ORDER BY seq"
    )
}

pub(crate) const INCIDENT_TIMELINE_BINDS: usize = 5;

fn incident_row(incident: &Incident) -> Vec<Value> {
    let time = |at: Option<DateTime<Utc>>| Value::OptInt(at.map(millis));
    vec![
        Value::Int(incident.id),
        Value::Text(incident.state.as_str().to_string()),
        Value::Text(incident.title.clone()),
        Value::Text(incident.group_key.clone()),
        Value::Text(to_json(&incident.labels)),
        Value::Flag(incident.flapping),
        Value::Flag(incident.escalated),
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

/// A batch sorted into what each table receives, with sequence numbers assigned from the writer's
/// counters. Only a committed batch may move the counters to `next_event_seq`/`next_journal_seq`.
pub(crate) struct Sorted<'a> {
    pub(crate) committed: Committed,
    pub(crate) next_event_seq: i64,
    pub(crate) next_journal_seq: i64,
    pub(crate) events: Vec<Vec<Value>>,
    pub(crate) journal: Vec<Vec<Value>>,
    pub(crate) run_inserts: Vec<Vec<Value>>,
    /// Runs that finished: id, status, error, finished at.
    pub(crate) run_updates: Vec<Vec<Value>>,
    /// Runs started in an earlier commit linked to an incident now: run id, incident.
    pub(crate) run_links: Vec<(String, IncidentId)>,
    /// Consumer positions: name, sequence number.
    pub(crate) cursors: Vec<(String, i64)>,
    /// Snapshots: name, sequence number, body.
    pub(crate) snapshots: Vec<(String, i64, Vec<u8>)>,
    pub(crate) incidents: Vec<Vec<Value>>,
    pub(crate) members: Vec<Vec<Value>>,
    pub(crate) silences: Vec<Vec<Value>>,
    pub(crate) prunes: Vec<&'a Prune>,
}

/// Sorts a batch into rows. Every journal row comes from the one mapping in core
/// ([`Write::row`]); the rest are projections. The correlator may rewrite an incident or a
/// member many times in one batch: one row each is written, as the batch leaves it.
pub(crate) fn sort(batch: &[Write], next_event_seq: i64, next_journal_seq: i64) -> Sorted<'_> {
    let mut event_seq = next_event_seq;
    let mut journal_seq = next_journal_seq;
    let mut committed = Committed::default();
    let mut events = Vec::new();
    let mut journal = Vec::new();
    let mut run_inserts = Vec::new();
    // Runs started in this batch, so a `RunIncident` right after fills the inserted row.
    let mut run_rows: HashMap<&str, usize> = HashMap::new();
    let mut run_links = Vec::new();
    let mut run_updates = Vec::new();
    let mut cursors = Vec::new();
    let mut snapshots = Vec::new();
    let mut incidents = Latest::default();
    let mut members: Latest<(IncidentId, &str), Member> = Latest::default();
    let mut silences = Latest::default();
    let mut prunes = Vec::new();
    for write in batch {
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
                    Value::Flag(run.dry_run),
                    Value::Int(millis(*at)),
                    Value::Text(row.body.clone()),
                    // `incident_id`, last so that a `RunIncident` can fill it.
                    Value::OptInt(None),
                ]);
            }
            if let Write::RunFinished { run_id, end, at } = write {
                run_updates.push(vec![
                    Value::Text(run_id.clone()),
                    Value::Text(end.status.as_str().to_string()),
                    Value::OptText(end.error.clone()),
                    Value::Int(millis(*at)),
                ]);
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
    // The last event of this commit, for writes made before the sequence numbers were known.
    let last_event_seq = (event_seq > next_event_seq).then_some(event_seq - 1);
    Sorted {
        committed,
        next_event_seq: event_seq,
        next_journal_seq: journal_seq,
        events,
        journal,
        run_inserts,
        run_updates,
        run_links,
        cursors: cursors
            .into_iter()
            .filter_map(|(name, seq)| Some((name, seq.or(last_event_seq)?)))
            .collect(),
        snapshots: snapshots
            .into_iter()
            .filter_map(|(name, seq, body)| Some((name, seq.or(last_event_seq)?, body)))
            .collect(),
        incidents: incidents.into_values().map(incident_row).collect(),
        members: members
            .into_values()
            .map(|member| member_row(&member))
            .collect(),
        silences: silences.into_values().map(silence_row).collect(),
        prunes,
    }
}

/// The columns of a row as the records need them, whichever backend read it.
pub(crate) trait Columns {
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn flag(&self, column: &str) -> Result<bool>;
}

/// Implements [`Columns`] for a backend's row type through `sqlx::Row::try_get`.
macro_rules! columns_for {
    ($row:ty) => {
        impl $crate::sql::Columns for $row {
            fn int(&self, column: &str) -> $crate::Result<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_int(&self, column: &str) -> $crate::Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn text(&self, column: &str) -> $crate::Result<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> $crate::Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> $crate::Result<bool> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}
pub(crate) use columns_for;

pub(crate) fn event_record(row: &impl Columns) -> Result<EventRecord> {
    let seq = row.int("seq")?;
    let body = row.text("body")?;
    let event = serde_json::from_str(&body).map_err(|error| Error::Corrupt {
        id: seq.to_string(),
        message: error.to_string(),
    })?;
    Ok(EventRecord { seq, event })
}

pub(crate) fn journal_entry(row: &impl Columns) -> Result<JournalEntry> {
    let seq = row.int("seq")?;
    let kind = row.text("kind")?;
    let body = row.text("body")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("journal entry {seq}"),
        message,
    };
    let body = serde_json::from_str(&body).map_err(|error| corrupt(error.to_string()))?;
    Ok(JournalEntry {
        seq,
        at: from_millis(row.int("at")?),
        event_id: row.opt_text("event_id")?,
        run_id: row.opt_text("run_id")?,
        incident_id: row.opt_int("incident_id")?,
        entry: homeostat_core::journal::Entry::from_row(&kind, body)
            .map_err(|error| corrupt(error.to_string()))?,
    })
}

pub(crate) fn run_record(row: &impl Columns) -> Result<RunRecord> {
    let id = row.text("id")?;
    let corrupt = |message: String| Error::Corrupt {
        id: id.clone(),
        message,
    };
    let status = row.text("status")?;
    let plan = row.text("plan")?;
    Ok(RunRecord {
        rule: row.text("rule")?,
        runbook: row.text("runbook")?,
        started_by: row.opt_text("started_by")?,
        target: row.text("target")?,
        event_id: row.text("event_id")?,
        status: status.parse::<RunStatus>().map_err(corrupt)?,
        dry_run: row.flag("dry_run")?,
        started_at: from_millis(row.int("started_at")?),
        finished_at: row.opt_int("finished_at")?.map(from_millis),
        error: row.opt_text("error")?,
        plan: serde_json::from_str(&plan).map_err(|error| corrupt(error.to_string()))?,
        incident_id: row.opt_int("incident_id")?,
        id: id.clone(),
    })
}

fn optional_time(row: &impl Columns, column: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.opt_int(column)?.map(from_millis))
}

/// A JSON column read back into its type, or the reason it is corrupt.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    column: &str,
) -> Result<T, String> {
    let text = row.text(column).map_err(|error| error.to_string())?;
    serde_json::from_str(&text).map_err(|error| format!("`{column}`: {error}"))
}

pub(crate) fn incident_record(row: &impl Columns) -> Result<Incident> {
    let id: IncidentId = row.int("id")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("incident {id}"),
        message,
    };
    let count = |column: &str| -> Result<u32> {
        let value = row.int(column)?;
        u32::try_from(value).map_err(|_| corrupt(format!("`{column}` is {value}")))
    };
    let state = row.text("state")?;
    Ok(Incident {
        id,
        state: State::parse(&state).ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
        title: row.text("title")?,
        group_key: row.text("group_key")?,
        labels: json_column(row, "labels").map_err(corrupt)?,
        flapping: row.flag("flapping")?,
        escalated: row.flag("escalated")?,
        members_firing: count("members_firing")?,
        members_total: count("members_total")?,
        reopened: count("reopened")?,
        started_at: from_millis(row.int("started_at")?),
        opened_at: from_millis(row.int("opened_at")?),
        acknowledged_at: optional_time(row, "acknowledged_at")?,
        acknowledged_by: row.opt_text("acknowledged_by")?,
        mitigated_at: optional_time(row, "mitigated_at")?,
        resolved_at: optional_time(row, "resolved_at")?,
        resolved_by: row.opt_text("resolved_by")?,
        escalated_at: optional_time(row, "escalated_at")?,
        updated_at: from_millis(row.int("updated_at")?),
    })
}

pub(crate) fn member_record(row: &impl Columns) -> Result<Member> {
    let incident: IncidentId = row.int("incident_id")?;
    let fingerprint = row.text("fingerprint")?;
    let corrupt = |message: String| Error::Corrupt {
        id: format!("incident {incident} member {fingerprint}"),
        message,
    };
    let status = row.text("status")?;
    Ok(Member {
        incident,
        status: match status.as_str() {
            "firing" => Status::Firing,
            "resolved" => Status::Resolved,
            _ => return Err(corrupt(format!("unknown status `{status}`"))),
        },
        source: row.text("source")?,
        labels: json_column(row, "labels").map_err(corrupt)?,
        annotations: json_column(row, "annotations").map_err(corrupt)?,
        first_event_id: row.text("first_event_id")?,
        last_event_id: row.text("last_event_id")?,
        first_seen: from_millis(row.int("first_seen")?),
        last_seen: from_millis(row.int("last_seen")?),
        starts_at: optional_time(row, "starts_at")?,
        generator_url: row.opt_text("generator_url")?,
        fingerprint: fingerprint.clone(),
    })
}

pub(crate) fn silence_record(row: &impl Columns) -> Result<Silence> {
    let id = row.text("id")?;
    let matchers = json_column(row, "matchers").map_err(|message| Error::Corrupt {
        id: format!("silence {id}"),
        message,
    })?;
    Ok(Silence {
        matchers,
        starts_at: from_millis(row.int("starts_at")?),
        ends_at: from_millis(row.int("ends_at")?),
        created_by: row.text("created_by")?,
        comment: row.text("comment")?,
        created_at: from_millis(row.int("created_at")?),
        expired_by: row.opt_text("expired_by")?,
        id,
    })
}
