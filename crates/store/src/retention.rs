//! The retention policy, for every SQL backend: what it may delete (planned with reads only, in
//! chunks the writer's commit takes in milliseconds) and the deletes of one [`Prune`], run inside
//! the writer's transaction. A backend gives it a connection through [`Sql`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use homeostat_core::config::Retention;

use crate::sql::{from_millis, millis, Value};
use crate::{Prune, Result, RetentionPlan, RetentionReport};

/// Rows deleted per prune: a chunk the writer's commit takes in milliseconds, so retention never
/// holds ingest back for long.
const DELETE_CHUNK: i64 = 2_000;

/// The statements retention runs, on one connection of a backend. SQL is written with `?`
/// placeholders; a backend that numbers them (`$1`) rewrites it.
#[async_trait]
pub(crate) trait Sql: Send {
    /// The integer columns of the first row, if there is one.
    async fn ints(&mut self, sql: &str, values: Vec<Value>) -> Result<Option<Vec<Option<i64>>>>;
    /// The first column of every row, as text.
    async fn texts(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<String>>;
    /// Runs a statement; the rows it changed.
    async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64>;
}

/// The first integer column of the first row; `None` for no row or NULL.
async fn int(connection: &mut impl Sql, sql: &str, values: Vec<Value>) -> Result<Option<i64>> {
    Ok(connection
        .ints(sql, values)
        .await?
        .and_then(|row| row.into_iter().next().flatten()))
}

/// `MIN(seq), MAX(seq)` of a table.
async fn seq_bounds(connection: &mut impl Sql, table: &str) -> Result<(Option<i64>, Option<i64>)> {
    let row = connection
        .ints(&format!("SELECT MIN(seq), MAX(seq) FROM {table}"), vec![])
        .await?
        .unwrap_or_default();
    Ok((
        row.first().copied().flatten(),
        row.get(1).copied().flatten(),
    ))
}

/// The first sequence number of `table` whose `column` (a time in milliseconds) is at or after
/// `at`, or one past the last row. Times grow with sequence numbers (the single writer assigns both),
/// so a binary search over the primary key finds it in a few dozen point reads, with no index on
/// the time.
async fn first_seq_at(
    connection: &mut impl Sql,
    table: &str,
    column: &str,
    at: DateTime<Utc>,
) -> Result<i64> {
    let (Some(mut low), Some(high)) = seq_bounds(connection, table).await? else {
        return Ok(0);
    };
    let mut high = high + 1;
    let target = millis(at);
    let probe = format!("SELECT seq, {column} FROM {table} WHERE seq >= ? ORDER BY seq LIMIT 1");
    while low < high {
        let middle = low + (high - low) / 2;
        let row = connection
            .ints(&probe, vec![Value::Int(middle)])
            .await?
            .and_then(|row| Some((row.first().copied()??, row.get(1).copied()??)));
        match row {
            // Rows past `high` say nothing new: `[middle, high)` has no rows (retention leaves gaps,
            // as it keeps a run's or an incident's journal rows among the loose ones it deletes), so
            // the answer is at `middle` or before. Taking such a row as the new `high` left it where
            // it was, and the search spun forever: size retention stopped for good.
            Some((seq, time)) if seq < high && time < target => low = seq + 1,
            Some((seq, _)) if seq < high => high = seq,
            _ => high = middle,
        }
    }
    Ok(low)
}

/// Where a time range starts and ends in `table`'s sequence numbers: `[start, end)`.
pub(crate) async fn seq_range(
    connection: &mut impl Sql,
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

async fn floors(connection: &mut impl Sql) -> Result<Floors> {
    let consumers = int(
        connection,
        "SELECT MIN(seq) FROM (SELECT seq FROM cursors \
         UNION ALL SELECT seq FROM snapshots WHERE seq >= 0) AS positions",
        vec![],
    )
    .await?;
    let newest_event = int(connection, "SELECT MAX(seq) FROM events", vec![]).await?;
    let newest_journal = int(connection, "SELECT MAX(seq) FROM journal", vec![]).await?;
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
    connection: &mut impl Sql,
    table: &str,
    condition: &str,
    below: i64,
) -> Result<Vec<(i64, i64, u64)>> {
    let (Some(mut low), _) = seq_bounds(connection, table).await? else {
        return Ok(Vec::new());
    };
    let mut chunks = Vec::new();
    while low < below {
        let high = (low + DELETE_CHUNK).min(below);
        let count = int(
            connection,
            &format!("SELECT COUNT(*) FROM {table} WHERE seq >= ? AND seq < ? AND ({condition})"),
            vec![Value::Int(low), Value::Int(high)],
        )
        .await?
        .unwrap_or(0);
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
/// journal rows when only their details go, paged by id (bound second). Ids are read as text.
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
    details: "SELECT CAST(id AS TEXT) FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id > ? \
              AND EXISTS (SELECT 1 FROM journal WHERE journal.incident_id = incidents.id) ORDER BY id",
    // The newest incident stays whatever its age: new incidents are numbered after the highest
    // number stored.
    summaries: "SELECT CAST(id AS TEXT) FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id > ? \
                AND id < (SELECT MAX(id) FROM incidents) ORDER BY id",
    column: "incident_id",
};

/// An id of a run (text) or an incident (a number), as bound and as read back as text.
trait Id: Sized {
    fn first() -> Value;
    fn parse(text: String) -> Option<Self>;
    fn value(&self) -> Value;
}

impl Id for String {
    fn first() -> Value {
        Value::Text(String::new())
    }
    fn parse(text: String) -> Option<Self> {
        Some(text)
    }
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl Id for i64 {
    fn first() -> Value {
        Value::Int(0)
    }
    fn parse(text: String) -> Option<Self> {
        text.parse().ok()
    }
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}

/// The ids `select` pages through, in pages of 500, with the journal rows each holds.
async fn owned<I: Id>(
    connection: &mut impl Sql,
    select: &str,
    column: &str,
    cutoff: i64,
) -> Result<Vec<(Vec<I>, u64)>> {
    let mut pages = Vec::new();
    let mut after = I::first();
    loop {
        let ids: Vec<I> = connection
            .texts(
                &format!("{select} LIMIT 500"),
                vec![Value::Int(cutoff), after.clone()],
            )
            .await?
            .into_iter()
            .filter_map(I::parse)
            .collect();
        let Some(last) = ids.last() else { break };
        after = last.value();
        let mut rows = 0u64;
        for id in &ids {
            let count = int(
                connection,
                &format!("SELECT COUNT(*) FROM journal WHERE {column} = ?"),
                vec![id.value()],
            )
            .await?
            .unwrap_or(0);
            rows += count as u64;
        }
        pages.push((ids, rows));
        tokio::task::yield_now().await;
    }
    Ok(pages)
}

/// What the retention policy deletes now, as prunes to commit through the writer (each a chunk a
/// commit takes in milliseconds), with the counts a dry run reports. Planning only reads.
pub(crate) async fn plan(
    connection: &mut impl Sql,
    policy: &Retention,
    now: DateTime<Utc>,
    bytes_before: u64,
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
            bytes_before,
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

    // By size: past 65% of the limit, the oldest share of events and event-level journal rows that
    // brings the database under 55% of it, estimated from the average row (rows are about alike in
    // size). The headroom is what a busy store writes between two checks (every second)
    // and while the deletes take turns with ingest: the limit is a ceiling, not a target. At 75%
    // and 65% the database reached 529 MiB of 512 in `homeostat-bench disk` once the writer's WAL
    // resets stopped stalling ingest (45,000 events/s).
    if policy.max_bytes > 0 && plan.report.bytes_before > policy.max_bytes / 100 * 65 {
        let goal = policy.max_bytes / 100 * 55;
        let share = (plan.report.bytes_before - goal) as f64 / plan.report.bytes_before as f64;
        let (low, high) = seq_bounds(connection, "events").await?;
        if let (Some(low), Some(high)) = (low, high) {
            let end = (low + ((high - low + 1) as f64 * share).ceil() as i64)
                .min(floors.events)
                .max(event_end);
            // The same time span of the journal goes with them.
            let until = int(
                connection,
                "SELECT MAX(received_at) FROM events WHERE seq < ?",
                vec![Value::Int(end)],
            )
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
pub(crate) async fn prune(connection: &mut impl Sql, prune: &Prune) -> Result<u64> {
    let deleted = match prune {
        Prune::Events { from, below } => {
            connection
                .execute(
                    &format!(
                        "DELETE FROM events WHERE seq >= ? AND seq < ? AND {EVENTS_THAT_MAY_GO} \
                         AND seq < (SELECT MAX(seq) FROM events)"
                    ),
                    vec![Value::Int(*from), Value::Int(*below)],
                )
                .await?
        }
        Prune::Decisions { from, below } => {
            connection
                .execute(
                    &format!(
                        "DELETE FROM journal WHERE seq >= ? AND seq < ? AND {LOOSE_ROWS} \
                         AND seq < (SELECT MAX(seq) FROM journal)"
                    ),
                    vec![Value::Int(*from), Value::Int(*below)],
                )
                .await?
        }
        Prune::Runs { ids, summaries } => {
            let mut deleted = 0;
            for id in ids {
                deleted += connection
                    .execute(
                        "DELETE FROM journal WHERE run_id = ? AND seq < (SELECT MAX(seq) FROM journal)",
                        vec![Value::Text(id.clone())],
                    )
                    .await?;
                if *summaries {
                    deleted += connection
                        .execute(
                            "DELETE FROM runs WHERE id = ? AND status <> 'running'",
                            vec![Value::Text(id.clone())],
                        )
                        .await?;
                }
            }
            deleted
        }
        Prune::Incidents { ids, summaries } => {
            let mut deleted = 0;
            for id in ids {
                deleted += connection
                    .execute(
                        "DELETE FROM journal WHERE incident_id = ? \
                         AND seq < (SELECT MAX(seq) FROM journal)",
                        vec![Value::Int(*id)],
                    )
                    .await?;
                if *summaries {
                    let gone = connection
                        .execute(
                            "DELETE FROM incidents WHERE id = ? AND state = 'resolved' \
                             AND id < (SELECT MAX(id) FROM incidents)",
                            vec![Value::Int(*id)],
                        )
                        .await?;
                    if gone > 0 {
                        deleted += gone
                            + connection
                                .execute(
                                    "DELETE FROM incident_members WHERE incident_id = ?",
                                    vec![Value::Int(*id)],
                                )
                                .await?;
                    }
                }
            }
            deleted
        }
    };
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, SqliteConnection};

    /// The search ends, and finds the first row at or after a time, in a table with gaps of every
    /// width (as retention leaves them), for every time from before the first row to after the last.
    #[tokio::test]
    async fn first_seq_at_ends_and_is_right_over_gaps() {
        let mut connection = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
            .execute(&mut connection)
            .await
            .unwrap();
        // Times grow with seq; the gaps are 1, 2, 3, ... rows wide; some times repeat.
        let mut rows = Vec::new();
        let (mut seq, mut at) = (5i64, 1_000i64);
        for gap in 0..40 {
            rows.push((seq, at));
            seq += 1 + gap % 7;
            at += gap % 3;
        }
        for (seq, at) in &rows {
            sqlx::query("INSERT INTO t VALUES (?, ?)")
                .bind(seq)
                .bind(at)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        let last = rows.last().unwrap();
        for target in 990..last.1 + 3 {
            let found = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                first_seq_at(&mut connection, "t", "at", from_millis(target)),
            )
            .await
            .unwrap_or_else(|_| panic!("the search for {target} did not end"))
            .unwrap();
            // What it must find: the first row at or after the time; past the last, one past it.
            let want = rows
                .iter()
                .find(|(_, at)| *at >= target)
                .map_or(last.0 + 1, |(seq, _)| *seq);
            // A bound in a gap before that row selects the same rows.
            let before = rows
                .iter()
                .filter(|(seq, _)| *seq < want)
                .map(|(seq, _)| *seq)
                .max();
            assert!(
                found <= want && before.is_none_or(|before| found > before),
                "at {target}: found {found}, the first row is {want}"
            );
        }
    }
}
