-- Named queries of the reconciler's retention (services/reconciler/retention.py, docs/retention.md).
-- Ended = FAILED, KILLED or LOST: ended_at is set, when it ended (migrations 0014, 0018), and the
-- partial indexes instances_ended_at and instances_ended_by_app hold exactly those rows.
-- Each batch is one short transaction: ids picked by a rule from a partial index, then locked with
-- SKIP LOCKED (retention never waits for a row someone else holds), their events and themselves deleted.

-- name: pick_ended_before
-- The age rule: ended longer ago than $1 seconds, oldest first, at most $2.
SELECT i.id FROM instances i
 WHERE i.ended_at IS NOT NULL AND i.ended_at < now() - make_interval(secs => $1)
   AND noops_prunable(i.id, i.state, i.host, i.ended_at)
 ORDER BY i.ended_at
 LIMIT $2;

-- name: apps_over_count
-- Apps with more than $1 ended instances (an index-only scan of instances_ended_by_app).
SELECT app FROM instances WHERE ended_at IS NOT NULL GROUP BY app HAVING count(*) > $1
ORDER BY app;

-- name: pick_beyond_newest
-- The count rule: of the apps in $1, in order, the ended instances beyond each one's newest $2,
-- at most $3 in all.  The nested loop stops at $3, so a batch walks only the apps it needs; n
-- (1-based position in $1 of the row's app) tells the caller which apps are done.
SELECT x.id, a.n
  FROM unnest($1::text[]) WITH ORDINALITY AS a(app, n)
 CROSS JOIN LATERAL (
       SELECT e.id FROM instances e
        WHERE e.app = a.app AND e.ended_at IS NOT NULL
          AND noops_prunable(e.id, e.state, e.host, e.ended_at)
        ORDER BY e.ended_at DESC, e.id DESC
       OFFSET $2 LIMIT $3) x
 LIMIT $3;

-- name: delete_ended
-- The picked instances that are still ended, with their events.  SKIP LOCKED: a row another
-- transaction holds is left for a later round, retention never waits.
WITH doomed AS (
    SELECT id FROM instances
     WHERE id = ANY($1::text[]) AND state IN ('FAILED', 'KILLED', 'LOST')
       FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM instance_events WHERE instance = ANY(ARRAY(SELECT id FROM doomed)) RETURNING 1
), gone AS (
    DELETE FROM instances WHERE id = ANY(ARRAY(SELECT id FROM doomed)) RETURNING 1
)
SELECT (SELECT count(*) FROM gone)::int AS instances, (SELECT count(*) FROM events)::int AS events;

-- name: would_prune
-- Dry run: what both rules would remove now ($1: age in seconds, 0 = no age rule; $2: newest kept
-- per app, 0 = no count rule), without batch limits.  Reads only.
WITH ended AS (
    SELECT i.id, i.ended_at < now() - make_interval(secs => $1) AS old,
           row_number() OVER (PARTITION BY i.app ORDER BY i.ended_at DESC, i.id DESC) AS newest
      FROM instances i
     WHERE i.ended_at IS NOT NULL AND noops_prunable(i.id, i.state, i.host, i.ended_at)
), doomed AS (
    SELECT id FROM ended WHERE ($1 > 0 AND old) OR ($2 > 0 AND newest > $2)
)
SELECT (SELECT count(*) FROM doomed)::int AS instances,
       (SELECT count(*) FROM instance_events WHERE instance IN (SELECT id FROM doomed))::int AS events;
