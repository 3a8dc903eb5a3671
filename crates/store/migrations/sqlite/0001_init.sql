-- Events as received: append-only, one row per normalized event. `seq` orders everything.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL,
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE UNIQUE INDEX events_id ON events (id);

-- The latest state of every alert fingerprint, upserted with each event, so restarts rebuild dedup state fast.
CREATE TABLE alerts (
    fingerprint TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    starts_at   INTEGER,
    last_seq    INTEGER NOT NULL
) WITHOUT ROWID;

-- Decisions, run intents and outcomes: append-only.
CREATE TABLE journal (
    seq      INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    event_id TEXT,
    run_id   TEXT,
    body     TEXT NOT NULL
);
CREATE INDEX journal_run ON journal (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX journal_event ON journal (event_id) WHERE event_id IS NOT NULL;

-- The current state of each run: a projection of the journal, updated in the same transaction.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    target      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    status      TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    error       TEXT,
    plan        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status ON runs (status);

-- How far each consumer of the event stream has read.
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;
