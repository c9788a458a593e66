-- Named queries of the gateway.  Parameters only: no SQL is ever built from user input.
-- jsonb goes in as text ($n::jsonb) and comes out as text (::text), because the shared pool
-- registers no JSON codec.

-- name: host_limits
-- The largest host decides what can ever fit; NULLs when no host has registered yet.
SELECT max(cpus) AS cpus, max(mem_mb) AS mem_mb FROM hosts;

-- name: create_app
-- One statement for "insert, or revive a deleted id": a live id yields no row (→ 409), and two
-- concurrent creates of a new id cannot both win.  A fresh id continues after any version left
-- in app_versions, so history is never overwritten.
INSERT INTO apps AS a (id, version, spec, instances, deleted, status, status_reason)
VALUES ($1, COALESCE((SELECT max(version) FROM app_versions WHERE app = $1), 0) + 1,
        $2::jsonb, $3, false, 'deploying', '')
ON CONFLICT (id) DO UPDATE
   SET version = a.version + 1, spec = EXCLUDED.spec, instances = EXCLUDED.instances,
       deleted = false, status = 'deploying', status_reason = '',
       created_at = now(), updated_at = now()
 WHERE a.deleted
RETURNING a.id, a.version;

-- name: update_app
UPDATE apps
   SET version = version + 1, spec = $2::jsonb, instances = $3,
       status = 'deploying', status_reason = '', updated_at = now()
 WHERE id = $1 AND NOT deleted
RETURNING id, version;

-- name: scale_app
-- The stored spec and the desired count change together, in one statement.
UPDATE apps
   SET version = version + 1, spec = jsonb_set(spec, '{instances}', to_jsonb($2::integer)),
       instances = $2, status = 'deploying', status_reason = '', updated_at = now()
 WHERE id = $1 AND NOT deleted
RETURNING id, version;

-- name: insert_version
-- $3: the name of the token that made the version.
INSERT INTO app_versions (app, version, spec, restart_gen, created_by)
SELECT id, version, spec, restart_gen, $3 FROM apps WHERE id = $1 AND version = $2;

-- name: versions_of
-- The app's version history, newest first (of every incarnation of the id: versions are never reused).
SELECT version, spec::text AS spec, created_at, created_by FROM app_versions
 WHERE app = $1 ORDER BY version DESC LIMIT $2;

-- name: delete_app
UPDATE apps
   SET deleted = true, instances = 0, status = 'deleting', updated_at = now()
 WHERE id = $1 AND NOT deleted
RETURNING id;

-- name: apps_view
-- All live apps ($1 NULL) or one; instance counts only for the current incarnation of the id.
SELECT a.id, a.version, a.instances, a.status, a.status_reason, a.spec::text AS spec,
       a.created_at, a.updated_at, COALESCE(c.counts, '{}'::jsonb)::text AS counts,
       a.last_good_version, a.backoff_delay_s, a.launch_after,
       d.id AS deployment_id, d.state AS deployment_state, d.from_version AS deployment_from,
       d.to_version AS deployment_to, d.reason AS deployment_reason, d.progress::text AS deployment_progress,
       f.instance AS failure_instance, f.state AS failure_state, f.reason AS failure_reason, f.at AS failure_at,
       f.version AS failure_version, f.host AS failure_host
  FROM apps a
  -- The last failure outlives its instance row (retention): app_failures, migration 0014.
  LEFT JOIN app_failures f ON f.app = a.id AND f.incarnation = a.created_at
  LEFT JOIN LATERAL (
        SELECT * FROM deployments dd WHERE dd.app = a.id ORDER BY dd.id DESC LIMIT 1
       ) d ON true
  LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(s.state, s.n) AS counts
          FROM (SELECT i.state, count(*) AS n
                  FROM instances i
                 WHERE i.app = a.id AND i.created_at >= a.created_at
                 GROUP BY i.state) s
       ) c ON true
 WHERE NOT a.deleted AND ($1::text IS NULL OR a.id = $1)
 ORDER BY a.id;

-- name: app_created_at
-- Any row, deleted or not: instances of an app being deleted stay visible.
SELECT created_at FROM apps WHERE id = $1;

-- name: app_instances
-- One page, newest first, keyset-paged on (created_at, id) (index instances_app_created): rows
-- inserted meanwhile are newer, so they never shift a page.  $3: state or NULL; $4: 'live',
-- 'ended' or NULL; $5/$6: the cursor (the last row of the previous page) or NULLs; $7: page size.
SELECT id, app, version, host, epoch, desired, state, ip, container_id, reason, created_at, updated_at,
       mac, parent, lease_expires, healthy, health
  FROM instances
 WHERE app = $1 AND created_at >= $2 AND ($3::text IS NULL OR state = $3)
   AND ($4::text IS NULL OR (state IN ('FAILED', 'KILLED', 'LOST')) = ($4 = 'ended'))
   AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6::text))
 ORDER BY created_at DESC, id DESC
 LIMIT $7;

-- name: instances_page
-- Instances of every app (the cluster map, `noops instances ls`), newest first, keyset-paged on
-- (created_at, id) like app_instances.  $1: host or NULL; $2: 'live', 'ended' or NULL; $3: an app-id
-- LIKE pattern (the token's scope, '*' turned into '%') or NULL; $4/$5: the cursor or NULLs; $6: page size.
SELECT id, app, version, host, epoch, desired, state, ip, container_id, reason, created_at, updated_at,
       mac, parent, lease_expires, healthy, health
  FROM instances
 WHERE ($1::text IS NULL OR host = $1)
   AND ($2::text IS NULL OR (state IN ('FAILED', 'KILLED', 'LOST')) = ($2 = 'ended'))
   AND ($3::text IS NULL OR app LIKE $3)
   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::text))
 ORDER BY created_at DESC, id DESC
 LIMIT $6;

-- name: instance
SELECT id, app, version, host, epoch, desired, state, ip, container_id, reason, created_at, updated_at,
       mac, parent, lease_expires, healthy, health
  FROM instances
 WHERE id = $1;

-- name: hosts_view
-- Reserved = what placed, not-yet-terminal instances hold (the placer's rule for what a host holds).
SELECT h.id, h.cpus, h.mem_mb, h.labels::text AS labels, h.load1, h.instances, h.last_seen,
       h.state, h.draining, h.cordoned, h.epoch,
       h.last_seen >= now() - make_interval(secs => $1) AS online,
       COALESCE(r.cpus, 0)::double precision AS reserved_cpus,
       COALESCE(r.mem_mb, 0)::bigint AS reserved_mem_mb
  FROM hosts h
  LEFT JOIN (SELECT host, sum(cpus) AS cpus, sum(mem_mb) AS mem_mb
               FROM instances
              WHERE state NOT IN ('FAILED', 'KILLED', 'LOST')
              GROUP BY host) r ON r.host = h.id
 ORDER BY h.id;

-- name: host_known
SELECT EXISTS (SELECT 1 FROM hosts WHERE id = $1);

-- name: host_reservations_by_app
-- What hosts_view sums, per app too: a token limited to some apps sees only theirs.
SELECT host, app, count(*) AS n, sum(cpus)::double precision AS cpus, sum(mem_mb)::bigint AS mem_mb
  FROM instances
 WHERE state NOT IN ('FAILED', 'KILLED', 'LOST')
 GROUP BY host, app;

-- name: ping
SELECT 1;

-- name: lb_ports
-- Where the load balancer serves each named port ($1 NULL: of every app); written by the registry.
SELECT app, port_name, bind_host, port FROM lb_ports WHERE $1::text IS NULL OR app = $1 ORDER BY app, port_name;

-- name: prometheus_targets
-- In-service instances with the ports of their own version (same rule as endpoints.sql's in_service).
SELECT i.app, i.version, i.host, i.id, i.ip, (v.spec -> 'ports')::text AS ports
  FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
 WHERE noops_in_service(i.state, i.healthy, v.spec) AND i.ip <> ''
 ORDER BY i.app, i.id;
