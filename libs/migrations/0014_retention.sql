-- Retention of ended instances (services/reconciler/retention.py, docs/retention.md).
--
-- Ended instances (FAILED, KILLED, LOST) and their events are removed after a while, so nothing
-- may depend on ended rows staying: what the platform must remember about failures lives in
-- app_failures, written by PostgreSQL itself wherever an instance ends FAILED or LOST (the
-- registry's reports, the placer's host-down, the reconciler's missing containers: one place,
-- the triggers below, instead of three code paths).

-- One row per app: the failures of its current incarnation (apps.created_at: a deleted id created
-- again starts over, as the old count of FAILED rows did) and the last failure, Marathon's
-- lastTaskFailure (GET /v1/apps/{id} `last_failure`).  ``failures`` only grows: the placer's
-- crash-loop backoff compares it with apps.failures_seen, and a count of FAILED rows would drop
-- when retention removes some, stalling the backoff.
CREATE TABLE IF NOT EXISTS app_failures (
    app          text PRIMARY KEY,
    incarnation  timestamptz NOT NULL,      -- apps.created_at of the incarnation counted
    failures     bigint NOT NULL DEFAULT 0, -- instances of that incarnation that ended FAILED
    instance     text NOT NULL,             -- the last one that ended FAILED or LOST
    state        text NOT NULL,
    reason       text NOT NULL,
    version      integer NOT NULL,
    host         text NOT NULL,
    at           timestamptz NOT NULL
);

-- A separate table, not columns of apps: the placer holds apps rows locked while it stops
-- instances, and a report batch holding those instances' locks would then wait for the app row
-- (a deadlock).  Instances of an earlier incarnation still ending are not counted.
CREATE OR REPLACE FUNCTION noops_record_failure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app_failures AS f (app, incarnation, failures, instance, state, reason, version, host, at)
    SELECT NEW.app, a.created_at, (NEW.state = 'FAILED')::int, NEW.id, NEW.state, NEW.reason, NEW.version,
           NEW.host, now()
      FROM apps a
     WHERE a.id = NEW.app AND NEW.created_at >= a.created_at
    ON CONFLICT (app) DO UPDATE
       SET failures = CASE WHEN f.incarnation = EXCLUDED.incarnation THEN f.failures ELSE 0 END
                      + EXCLUDED.failures,
           incarnation = EXCLUDED.incarnation, instance = EXCLUDED.instance, state = EXCLUDED.state,
           reason = EXCLUDED.reason, version = EXCLUDED.version, host = EXCLUDED.host, at = EXCLUDED.at;
    RETURN NULL;
END
$$;

-- The WHEN clauses keep every other write to instances (health, leases) free of the trigger.
CREATE OR REPLACE TRIGGER instances_failed_update AFTER UPDATE OF state ON instances FOR EACH ROW
    WHEN (NEW.state IN ('FAILED', 'LOST') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION noops_record_failure();
CREATE OR REPLACE TRIGGER instances_failed_insert AFTER INSERT ON instances FOR EACH ROW
    WHEN (NEW.state IN ('FAILED', 'LOST'))
    EXECUTE FUNCTION noops_record_failure();

-- What the task log already holds: the count and the newest failure of each app's incarnation
-- (an app whose failures were counted from rows keeps counting from there).
INSERT INTO app_failures (app, incarnation, failures, instance, state, reason, version, host, at)
SELECT DISTINCT ON (i.app) i.app, a.created_at,
       count(*) FILTER (WHERE i.state = 'FAILED') OVER (PARTITION BY i.app),
       i.id, i.state, i.reason, i.version, i.host, i.updated_at
  FROM instances i JOIN apps a ON a.id = i.app
 WHERE i.state IN ('FAILED', 'LOST') AND i.created_at >= a.created_at
 ORDER BY i.app, i.updated_at DESC, i.id DESC
ON CONFLICT (app) DO NOTHING;

-- Retention's index scans.  An ended row is never written again (the registry's judge ignores
-- reports about it; the placer and the gateway write live instances only), so its updated_at
-- is when it ended.  Per app, newest first (the count rule) and oldest first (the age rule):
CREATE INDEX IF NOT EXISTS instances_ended_by_app ON instances (app, updated_at DESC, id DESC)
    WHERE state IN ('FAILED', 'KILLED', 'LOST');
CREATE INDEX IF NOT EXISTS instances_ended_at ON instances (updated_at)
    WHERE state IN ('FAILED', 'KILLED', 'LOST');
-- GET /v1/apps/{id}/instances pages by (created_at, id), newest first.
CREATE INDEX IF NOT EXISTS instances_app_created ON instances (app, created_at DESC, id DESC);

-- May retention remove this ended instance?  The one rule (retention.sql uses nothing else):
-- * not while it holds a pool address (IPAM mode "pool"): the address would leak unseen;
-- * not while it is LOST with its host DOWN, for the 7 days in which the placer stops the copies
--   a returning host still runs (placer.sql stale_copies reads these rows).
CREATE OR REPLACE FUNCTION noops_prunable(instance text, state text, host text, ended_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT NOT EXISTS (SELECT 1 FROM ipam_addresses p WHERE p.instance = $1)
       AND NOT ($2 = 'LOST' AND $4 > now() - interval '7 days'
                AND EXISTS (SELECT 1 FROM hosts h WHERE h.id = $3 AND h.state = 'DOWN'))
$$;
