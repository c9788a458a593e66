-- name: fence_take
-- A new leader takes the next token; plans made under an older one can no longer commit.
INSERT INTO placer_fence (id, token, holder) VALUES (1, 1, $1)
ON CONFLICT (id) DO UPDATE SET token = placer_fence.token + 1, holder = $1, acquired_at = now()
RETURNING token;

-- name: fence_check
SELECT token FROM placer_fence WHERE id = 1 FOR SHARE;

-- name: lock_apps
-- One committer: the row locks serialize decisions about these apps (ordered: no deadlocks).
SELECT id, version, spec, instances, deleted, created_at, status, status_reason, restart_gen,
       last_good_version, backoff_delay_s, launch_after, failures_seen
FROM apps WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE;

-- name: live_instances_of
-- in_service: the one rule (noops_in_service, migration 0006); rolling updates count these as healthy.
SELECT i.id, i.app, i.version, i.host, i.state, i.desired, i.kill_requested,
       noops_in_service(i.state, i.healthy, v.spec) AS in_service
FROM instances i LEFT JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE i.app = ANY($1::text[]) AND i.state NOT IN ('FAILED', 'KILLED', 'LOST')
ORDER BY i.created_at, i.id;

-- name: version_specs_of
SELECT v.app, v.version, v.spec, v.restart_gen
FROM app_versions v JOIN unnest($1::text[], $2::int[]) AS t(app, version)
  ON v.app = t.app AND v.version = t.version;

-- name: failures_of
-- How many instances of the app's current incarnation ended FAILED: a counter PostgreSQL keeps
-- where instances end (app_failures, migration 0014), not a count of rows, which retention lowers.
SELECT f.app, f.failures::int AS failures
FROM app_failures f JOIN apps a ON a.id = f.app AND f.incarnation = a.created_at
WHERE f.app = ANY($1::text[]);

-- name: latest_deployments_of
SELECT DISTINCT ON (app) id, app, from_version, to_version, state, progress, progress_at
FROM deployments WHERE app = ANY($1::text[]) ORDER BY app, id DESC;

-- name: hosts_snapshot
-- Every known host with what is reserved on it.  Disk and addresses of instances that already
-- run are in the host's own free figures (heartbeat), so only those not yet running count here.
WITH port_versions AS MATERIALIZED (
    -- Versions that ask for host ports: few or none, so the instances holding them are looked
    -- up from here (LATERAL, by the app index) and not the other way round (100,000 instances
    -- joined to their versions for nothing cost ~0.5 s).
    SELECT app, version, (p ->> 'host_port')::int AS port
    FROM app_versions, jsonb_array_elements(spec -> 'ports') AS p
    WHERE coalesce((p ->> 'host_port')::int, 0) > 0
)
SELECT h.id, h.cpus, h.mem_mb, h.labels, h.state, h.draining, h.cordoned, h.disk_free_mb,
       h.addresses_free, h.egress_mbit, h.epoch, h.ipam, h.ports_listening, hp.host_ports,
       (h.state = 'UP' AND h.last_seen > now() - make_interval(secs => $1)) AS up,
       coalesce(r.cpus, 0)::float8 AS used_cpus, coalesce(r.mem_mb, 0)::float8 AS used_mem_mb,
       coalesce(r.disk_mb, 0)::float8 AS used_disk_mb, coalesce(r.egress_mbit, 0)::float8 AS used_egress_mbit,
       coalesce(r.pending, 0)::float8 AS used_addresses
FROM hosts h
LEFT JOIN (
    SELECT host, sum(cpus) AS cpus, sum(mem_mb) AS mem_mb, sum(egress_mbit) AS egress_mbit,
           sum(disk_mb) FILTER (WHERE state IN ('PENDING', 'STARTING')) AS disk_mb,
           count(*) FILTER (WHERE state IN ('PENDING', 'STARTING')) AS pending
    FROM instances WHERE state NOT IN ('FAILED', 'KILLED', 'LOST') GROUP BY host
) r ON r.host = h.id
LEFT JOIN (
    -- Host ports held by live instances.
    SELECT i.host, array_agg(DISTINCT v.port) AS host_ports
    FROM port_versions v
    CROSS JOIN LATERAL (SELECT host FROM instances
                        WHERE app = v.app AND version = v.version
                          AND state NOT IN ('FAILED', 'KILLED', 'LOST')) i
    GROUP BY i.host
) hp ON hp.host = h.id
ORDER BY h.id;

-- name: insert_instances
INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, disk_mb, egress_mbit, fence)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bigint[], $6::float8[], $7::int[],
                     $8::int[], $9::int[], $10::bigint[]);

-- name: insert_events
INSERT INTO instance_events (instance, state, reason, source)
SELECT i, s, r, 'placer' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, s, r);

-- name: mark_stopping
UPDATE instances SET desired = 'KILLED', updated_at = now()
WHERE id = ANY($1::text[]) AND desired <> 'KILLED'
RETURNING id, app, version, host, epoch;

-- name: update_apps
UPDATE apps AS a
SET status = t.status, status_reason = t.reason, backoff_delay_s = t.delay, launch_after = t.launch_after,
    failures_seen = t.failures, last_good_version = t.last_good, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[], $6::int[], $7::int[])
     AS t(id, status, reason, delay, launch_after, failures, last_good)
WHERE a.id = t.id;

-- name: insert_deployments
INSERT INTO deployments (app, from_version, to_version)
SELECT * FROM unnest($1::text[], $2::int[], $3::int[]);

-- name: supersede_deployments
UPDATE deployments SET state = 'superseded', updated_at = now()
WHERE app = ANY($1::text[]) AND state IN ('running', 'paused');

-- name: update_deployments
-- The placer ends deployments (succeeded, failed); pausing and resuming are the operator's.
UPDATE deployments AS d
SET state = CASE WHEN t.state IN ('succeeded', 'failed') THEN t.state ELSE d.state END,
    reason = CASE WHEN t.state IN ('succeeded', 'failed') THEN t.reason ELSE d.reason END,
    progress = t.progress::jsonb, updated_at = now(),
    progress_at = CASE WHEN t.moved THEN now() ELSE d.progress_at END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[]) AS t(id, state, reason, progress, moved)
WHERE d.id = t.id;

-- name: rollback_app
-- A rollback is a new version with an earlier version's spec (Marathon's way), so history stays linear.
WITH src AS (SELECT spec, restart_gen FROM app_versions WHERE app = $1 AND version = $2)
UPDATE apps SET version = version + 1, spec = src.spec, instances = (src.spec ->> 'instances')::int,
       updated_at = now()
FROM src WHERE apps.id = $1
RETURNING apps.version, apps.spec, apps.restart_gen;

-- name: record_version
INSERT INTO app_versions (app, version, spec, restart_gen) VALUES ($1, $2, $3, $4)
ON CONFLICT (app, version) DO NOTHING;

-- name: upsert_hosts
-- Returns the hosts that were DOWN and speak again.
WITH before AS (SELECT id, state FROM hosts WHERE id = ANY($1::text[])),
up AS (
    INSERT INTO hosts (id, cpus, mem_mb, labels, load1, instances, disk_free_mb, addresses_free, egress_mbit,
                       ipam, ports_listening, last_seen)
    -- Listening ports come as "22,80" (an int[] per host cannot pass through unnest).
    SELECT id, cpus, mem_mb, labels::jsonb, load1, instances, disk::jsonb, addrs, egress, ipam,
           coalesce(string_to_array(nullif(ports, ''), ',')::int[], '{}'), now()
    FROM unnest($1::text[], $2::float8[], $3::int[], $4::text[], $5::float8[], $6::int[], $7::text[], $8::int[],
                $9::int[], $10::text[], $11::text[])
         AS t(id, cpus, mem_mb, labels, load1, instances, disk, addrs, egress, ipam, ports)
    ON CONFLICT (id) DO UPDATE SET cpus = excluded.cpus, mem_mb = excluded.mem_mb, labels = excluded.labels,
        load1 = excluded.load1, instances = excluded.instances, disk_free_mb = excluded.disk_free_mb,
        addresses_free = excluded.addresses_free, egress_mbit = excluded.egress_mbit, ipam = excluded.ipam,
        ports_listening = excluded.ports_listening, last_seen = excluded.last_seen, state = 'UP',
        state_changed_at = CASE WHEN hosts.state = 'DOWN' THEN now() ELSE hosts.state_changed_at END
    RETURNING id
)
SELECT before.id FROM before JOIN up ON up.id = before.id WHERE before.state = 'DOWN';

-- name: touch_hosts
-- Hosts whose heartbeat says nothing new (heartbeats.py): only last_seen and load move, a
-- narrow update instead of the full upsert.  Returns the hosts that were DOWN (back) and those
-- with no row (back = false: the caller upserts them in full next time).
WITH t AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS t(id, load1)),
back AS (SELECT h.id FROM hosts h JOIN t ON t.id = h.id WHERE h.state = 'DOWN'),
touched AS (
    UPDATE hosts AS h SET last_seen = now(), load1 = t.load1, state = 'UP',
        state_changed_at = CASE WHEN h.state = 'DOWN' THEN now() ELSE h.state_changed_at END
    FROM t WHERE h.id = t.id
    RETURNING h.id
)
SELECT id, true AS back FROM back
UNION ALL
SELECT t.id, false FROM t WHERE NOT EXISTS (SELECT 1 FROM touched WHERE touched.id = t.id);

-- name: mark_down
-- The placer judges silence by what it heard (services/placer/silence.py), not by last_seen:
-- a heartbeat write delayed by a database hiccup must not look like a silent host.
UPDATE hosts SET state = 'DOWN', epoch = epoch + 1, state_changed_at = now()
WHERE id = ANY($1::text[]) AND state = 'UP'
RETURNING id;

-- name: up_hosts
SELECT id FROM hosts WHERE state = 'UP';

-- name: lose_instances
UPDATE instances SET state = 'LOST', reason = 'host ' || host || ' stopped answering', updated_at = now()
WHERE host = ANY($1::text[]) AND state NOT IN ('FAILED', 'KILLED', 'LOST')
RETURNING id, app, desired;

-- name: stale_copies
-- Instances lost with their host: if the host is back, their containers may still run there.
SELECT i.id, i.app, i.version, i.host, i.epoch FROM instances i
WHERE i.host = ANY($1::text[]) AND i.state = 'LOST' AND i.updated_at > now() - interval '7 days';

-- name: apps_to_resync
-- Apps that want instances, and deleted apps that still have instances to stop.
SELECT a.id FROM apps a
WHERE NOT a.deleted
   OR EXISTS (SELECT 1 FROM instances i
              WHERE i.app = a.id AND i.desired = 'RUNNING' AND i.state NOT IN ('FAILED', 'KILLED', 'LOST'))
ORDER BY a.id;
