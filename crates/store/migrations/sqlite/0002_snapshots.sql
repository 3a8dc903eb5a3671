-- Per-event upserts into `alerts` rewrote random B-tree pages on every commit and capped ingest near
-- 80,000 events/s. The decider now snapshots its alert state with its cursor instead.
DROP TABLE alerts;

-- Consumers' state at a cursor position, so a restart replays only the events after it.
CREATE TABLE snapshots (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;

-- Latest events per source (the probe's state after a restart, `events?source=`). Appends stay local.
CREATE INDEX events_source ON events (source, seq);
