-- Incidents as people see them: one row each, replaced on every change. The correlator numbers them,
-- so `id` is its number, not one SQLite picks.
CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY,
    state           TEXT NOT NULL,
    title           TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    labels          TEXT NOT NULL,
    flapping        INTEGER NOT NULL,
    escalated       INTEGER NOT NULL,
    members_firing  INTEGER NOT NULL,
    members_total   INTEGER NOT NULL,
    reopened        INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    opened_at       INTEGER NOT NULL,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    mitigated_at    INTEGER,
    resolved_at     INTEGER,
    resolved_by     TEXT,
    escalated_at    INTEGER,
    updated_at      INTEGER NOT NULL
);
-- Open incidents newest first, without reading the resolved ones that pile up behind them.
CREATE INDEX incidents_open ON incidents (id) WHERE state <> 'resolved';
CREATE INDEX incidents_group ON incidents (group_key, id);

-- The alerts of each incident, one row per fingerprint; an upsert keeps how it joined.
CREATE TABLE incident_members (
    incident_id    INTEGER NOT NULL,
    fingerprint    TEXT NOT NULL,
    source         TEXT NOT NULL,
    status         TEXT NOT NULL,
    labels         TEXT NOT NULL,
    annotations    TEXT NOT NULL,
    first_event_id TEXT NOT NULL,
    last_event_id  TEXT NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    starts_at      INTEGER,
    generator_url  TEXT,
    PRIMARY KEY (incident_id, fingerprint)
) WITHOUT ROWID;

-- Timeline entries carry their incident; a run is linked to one through `runs.incident_id`.
ALTER TABLE journal ADD COLUMN incident_id INTEGER;
CREATE INDEX journal_incident ON journal (incident_id) WHERE incident_id IS NOT NULL;
ALTER TABLE runs ADD COLUMN incident_id INTEGER;
CREATE INDEX runs_incident ON runs (incident_id) WHERE incident_id IS NOT NULL;

-- Silences, replaced when they change (expired early).
CREATE TABLE silences (
    id         TEXT PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expired_by TEXT
) WITHOUT ROWID;
CREATE INDEX silences_ends ON silences (ends_at);

-- Events other than alerts by kind (the `change` events near an incident). Alerts, nearly all of
-- ingest, stay out of this index, so appending them costs nothing more.
CREATE INDEX events_kind ON events (kind, seq) WHERE kind <> 'alert';
