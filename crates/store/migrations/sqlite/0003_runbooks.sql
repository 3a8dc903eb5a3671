-- Runs name the runbook they execute, and the person who started them by hand.
ALTER TABLE runs ADD COLUMN runbook TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN started_by TEXT;
