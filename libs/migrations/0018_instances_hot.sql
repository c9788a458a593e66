-- Instance updates HOT (heap-only tuples).  A report that moves an instance PENDING -> RUNNING
-- (or sets its health) changed a column that an index depends on -- `state` in the predicates of
-- instances_host_active and the retention indexes, `updated_at` a key of those -- so every such
-- update wrote the new row version elsewhere and an entry into every index of the table.  Now no
-- index reads `state` or `updated_at`: the retention indexes key a generated `ended_at` (when an
-- ended instance ended, NULL while it lives, so it stays NULL through a live instance's updates),
-- the host index covers every instance, and half of each page is left free for the new versions.
-- The registry's update of 100,000 fresh instances: ~2 s -> ~0.85 s in isolation, and less WAL
-- (bench/RESULTS.md, "(b) again, issue 13").  Rewrites the table once (the stored column).
ALTER TABLE instances SET (fillfactor = 50);
ALTER TABLE instances ADD COLUMN IF NOT EXISTS ended_at timestamptz
    GENERATED ALWAYS AS (CASE WHEN state IN ('FAILED', 'KILLED', 'LOST') THEN updated_at END) STORED;

-- Per host, live or not (the queries filter on state): hosts_snapshot, lose_instances, stale_copies.
CREATE INDEX IF NOT EXISTS instances_host ON instances (host);
DROP INDEX IF EXISTS instances_host_active;

-- Retention's index scans (retention.sql reads ended_at): per app newest first (the count rule),
-- and oldest first (the age rule).  An ended row is never written again, so ended_at is fixed.
DROP INDEX IF EXISTS instances_ended_by_app;
DROP INDEX IF EXISTS instances_ended_at;
CREATE INDEX IF NOT EXISTS instances_ended_by_app ON instances (app, ended_at DESC, id DESC) WHERE ended_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_ended_at ON instances (ended_at) WHERE ended_at IS NOT NULL;
