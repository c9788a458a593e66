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

-- name: take_changed_sets
-- After announce_lock, in one statement: take every mark (rows of transactions not committed yet
-- are not seen: they are taken by the next round), give each marked app its next seq and read
-- its in-service set, the rule of in_service: one row per instance in service, or one with id
-- NULL for an app with none.
WITH taken AS (DELETE FROM endpoints_changed RETURNING app),
marked AS (SELECT app, nextval('endpoints_seq') AS seq FROM (SELECT DISTINCT app FROM taken) AS a)
SELECT m.app, m.seq, s.id, s.host, s.ip, s.ports
FROM marked m LEFT JOIN LATERAL (
    SELECT i.id, i.host, i.ip, v.spec -> 'ports' AS ports
    FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
    WHERE i.app = m.app AND noops_in_service(i.state, i.healthy, v.spec)) AS s ON true
ORDER BY m.app, s.id;

-- name: in_service_instances
-- The same rule for the instances named in $1: those of them in service now (the others are
-- not).  The registry's fan-out after a report batch: only the instances the batch named.
SELECT i.app, i.id, i.host, i.ip, i.version, v.spec -> 'ports' AS ports
FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE i.id = ANY($1::text[])
  AND noops_in_service(i.state, i.healthy, v.spec)
ORDER BY i.app, i.id;
