-- The schema of SQLite's four migrations as they stand, in PostgreSQL's types. Times are
-- milliseconds since the epoch and JSON is text, as in SQLite, so both backends share one mapping
-- of records to rows (`sql.rs`); bodies are parsed only by the label filters, which cast them.

-- Events as received: append-only, one row per normalized event. `seq` orders everything and is
-- assigned by the single writer, not by a sequence: a rolled-back batch must leave no gap.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    id          TEXT NOT NULL,
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    body        TEXT NOT NULL
);
CREATE UNIQUE INDEX events_id ON events (id);
-- Latest events per source (the probe's state after a restart, `events?source=`).
CREATE INDEX events_source ON events (source, seq);
-- Events other than alerts by kind (the `change` events near an incident).
CREATE INDEX events_kind ON events (kind, seq) WHERE kind <> 'alert';

-- Decisions, run intents and outcomes, incident timelines: append-only.
CREATE TABLE journal (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    event_id    TEXT,
    run_id      TEXT,
    incident_id BIGINT,
    body        TEXT NOT NULL
);
CREATE INDEX journal_run ON journal (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX journal_event ON journal (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX journal_incident ON journal (incident_id) WHERE incident_id IS NOT NULL;

-- The current state of each run: a projection of the journal, updated in the same transaction.
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    rule        TEXT NOT NULL,
    runbook     TEXT NOT NULL DEFAULT '',
    started_by  TEXT,
    target      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    status      TEXT NOT NULL,
    dry_run     BOOLEAN NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    error       TEXT,
    plan        TEXT NOT NULL,
    incident_id BIGINT
);
CREATE INDEX runs_started ON runs (started_at);
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_incident ON runs (incident_id) WHERE incident_id IS NOT NULL;

-- How far each consumer of the event stream has read.
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);

-- Consumers' state at a cursor position, so a restart replays only the events after it.
CREATE TABLE snapshots (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL,
    body BYTEA NOT NULL
);

-- Incidents as people see them: one row each, replaced on every change; the correlator numbers
-- them.
CREATE TABLE incidents (
    id              BIGINT PRIMARY KEY,
    state           TEXT NOT NULL,
    title           TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    labels          TEXT NOT NULL,
    flapping        BOOLEAN NOT NULL,
    escalated       BOOLEAN NOT NULL,
    members_firing  BIGINT NOT NULL,
    members_total   BIGINT NOT NULL,
    reopened        BIGINT NOT NULL,
    started_at      BIGINT NOT NULL,
    opened_at       BIGINT NOT NULL,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    mitigated_at    BIGINT,
    resolved_at     BIGINT,
    resolved_by     TEXT,
    escalated_at    BIGINT,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX incidents_open ON incidents (id) WHERE state <> 'resolved';
CREATE INDEX incidents_group ON incidents (group_key, id);

-- The alerts of each incident, one row per fingerprint; an upsert keeps how it joined.
CREATE TABLE incident_members (
    incident_id    BIGINT NOT NULL,
    fingerprint    TEXT NOT NULL,
    source         TEXT NOT NULL,
    status         TEXT NOT NULL,
    labels         TEXT NOT NULL,
    annotations    TEXT NOT NULL,
    first_event_id TEXT NOT NULL,
    last_event_id  TEXT NOT NULL,
    first_seen     BIGINT NOT NULL,
    last_seen      BIGINT NOT NULL,
    starts_at      BIGINT,
    generator_url  TEXT,
    PRIMARY KEY (incident_id, fingerprint)
);

-- Silences, replaced when they change (expired early).
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expired_by TEXT
);
CREATE INDEX silences_ends ON silences (ends_at);
