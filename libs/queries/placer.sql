-- name: lock_app
-- One committer per app: the row lock serializes decisions about this app.
SELECT id, version, spec, instances, deleted, created_at, status, status_reason
FROM apps WHERE id = $1 FOR UPDATE;

-- name: live_instances
SELECT id, version, host, state, desired, created_at
FROM instances
WHERE app = $1 AND state NOT IN ('FAILED', 'KILLED', 'LOST')
ORDER BY created_at, id;

-- name: version_specs
SELECT version, spec FROM app_versions WHERE app = $1 AND version = ANY($2::int[]);

-- name: live_hosts
-- Hosts heard from within the grace period, with what is reserved on them (reserved from
-- placement on, so two placements in a row cannot over-commit a host).
SELECT h.id, h.cpus, h.mem_mb,
       coalesce(sum(i.cpus), 0)::float8 AS cpus_used,
       coalesce(sum(i.mem_mb), 0)::int AS mem_used,
       count(i.id)::int AS instances
FROM hosts h
LEFT JOIN instances i ON i.host = h.id AND i.state NOT IN ('FAILED', 'KILLED', 'LOST')
WHERE h.last_seen > now() - make_interval(secs => $1)
GROUP BY h.id;

-- name: insert_instances
INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb)
SELECT i, $2, $3, h, 1, $4, $5 FROM unnest($1::text[], $6::text[]) AS t(i, h);

-- name: insert_events
INSERT INTO instance_events (instance, state, reason, source)
SELECT i, $2, $3, 'placer' FROM unnest($1::text[]) AS t(i);

-- name: mark_stopping
UPDATE instances SET desired = 'KILLED', updated_at = now()
WHERE id = ANY($1::text[]) AND desired <> 'KILLED'
RETURNING id, version, host, epoch;

-- name: set_status
UPDATE apps SET status = $2, status_reason = $3, updated_at = now()
WHERE id = $1 AND (status <> $2 OR status_reason <> $3);

-- name: upsert_hosts
INSERT INTO hosts (id, cpus, mem_mb, labels, load1, instances, last_seen)
SELECT id, cpus, mem_mb, labels::jsonb, load1, instances, now()
FROM unnest($1::text[], $2::float8[], $3::int[], $4::text[], $5::float8[], $6::int[])
     AS t(id, cpus, mem_mb, labels, load1, instances)
ON CONFLICT (id) DO UPDATE SET cpus = excluded.cpus, mem_mb = excluded.mem_mb, labels = excluded.labels,
    load1 = excluded.load1, instances = excluded.instances, last_seen = excluded.last_seen;

-- name: apps_to_resync
-- Apps that want instances, and deleted apps that still have instances to stop.
SELECT a.id FROM apps a
WHERE NOT a.deleted
   OR EXISTS (SELECT 1 FROM instances i
              WHERE i.app = a.id AND i.desired = 'RUNNING' AND i.state NOT IN ('FAILED', 'KILLED', 'LOST'))
ORDER BY a.id;
