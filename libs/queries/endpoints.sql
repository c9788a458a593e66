-- name: in_service
-- THE in-service set (announcements, every sink): the apps in $1 (NULL: all).  The rule itself
-- is noops_in_service() (migration 0006): RUNNING, and healthy when the version has checks.
-- Ports and checks come from each instance's own version (a rolling update may mix versions).
SELECT i.app, i.id, i.host, i.ip, i.version, v.spec -> 'ports' AS ports
FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE ($1::text[] IS NULL OR i.app = ANY($1::text[])) 
  AND noops_in_service(i.state, i.healthy, v.spec)
ORDER BY i.app, i.id;

-- name: next_seqs
SELECT nextval('endpoints_seq') FROM generate_series(1, $1);

-- name: announce_lock
-- Announcements take turns (transaction-scoped): each reads the sets after the previous one
-- committed and takes its seq after reading, so a higher seq is never an older set.
-- The key is b"endpoint" as a big-endian integer.
SELECT pg_advisory_xact_lock(7308889679337188980);

-- name: mark_changed
INSERT INTO endpoints_changed (app) SELECT unnest($1::text[]);

-- name: take_changed
-- After announce_lock: take every mark (rows of transactions not committed yet are not seen:
-- they are taken by the next round) and give each marked app its next seq.  Its set is read
-- next (in_service: a join over the apps given, not one lookup per app, which cost 2.5 times
-- as much in bench.placer_e2e), under the same lock, so a higher seq still never carries an
-- older set.
WITH taken AS (DELETE FROM endpoints_changed RETURNING app)
SELECT app, nextval('endpoints_seq') AS seq FROM (SELECT DISTINCT app FROM taken ORDER BY app) AS a;

-- name: in_service_instances
-- The same rule for the instances named in $1: those of them in service now (the others are
-- not).  The registry's fan-out after a report batch: only the instances the batch named.
SELECT i.app, i.id, i.host, i.ip, i.version, v.spec -> 'ports' AS ports
FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE i.id = ANY($1::text[])
  AND noops_in_service(i.state, i.healthy, v.spec)
ORDER BY i.app, i.id;
