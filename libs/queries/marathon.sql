-- Named queries of the gateway's Marathon /v2 layer (services/gateway/marathon): reads only;
-- every write goes through the same store and control functions as /v1.

-- name: marathon_apps
-- Live apps ($1 NULL: all) with what a Marathon app shows besides its tasks: the time of the
-- current version, the latest deployment and the last failure (as apps_view, without its
-- per-app instance counts: /v2 counts the live tasks it reads anyway).
SELECT a.id, a.version, a.spec::text AS spec, v.created_at AS version_at,
       d.id AS deployment_id, d.state AS deployment_state, d.to_version AS deployment_to,
       f.instance AS failure_instance, f.state AS failure_state, f.reason AS failure_reason, f.at AS failure_at,
       f.version AS failure_version, f.host AS failure_host
  FROM apps a
  LEFT JOIN app_versions v ON v.app = a.id AND v.version = a.version
  LEFT JOIN app_failures f ON f.app = a.id AND f.incarnation = a.created_at
  LEFT JOIN LATERAL (
        SELECT dd.id, dd.state, dd.to_version FROM deployments dd WHERE dd.app = a.id ORDER BY dd.id DESC LIMIT 1
       ) d ON true
 WHERE NOT a.deleted AND ($1::text IS NULL OR a.id = $1)
 ORDER BY a.id;

-- name: live_tasks
-- Live instances ($1 NULL: of every live app), of the current incarnation of each id only.
SELECT i.id, i.app, i.version, i.host, i.state, i.desired, i.kill_requested, i.ip, i.healthy, i.health,
       i.created_at, i.updated_at
  FROM instances i
  JOIN apps a ON a.id = i.app AND NOT a.deleted AND i.created_at >= a.created_at
 WHERE i.state NOT IN ('FAILED', 'KILLED', 'LOST') AND ($1::text IS NULL OR i.app = $1);

-- name: task_versions
-- The versions live instances run ($1 NULL: of every app), once each: their ports, how many
-- health checks they have and when they were made.
SELECT v.app, v.version, v.created_at, (v.spec -> 'ports')::text AS ports,
       COALESCE(jsonb_array_length(v.spec -> 'health_checks'), 0) AS checks
  FROM app_versions v
 WHERE (v.app, v.version) IN (SELECT DISTINCT i.app, i.version FROM instances i
                               WHERE i.state NOT IN ('FAILED', 'KILLED', 'LOST') AND ($1::text IS NULL OR i.app = $1));

-- name: version_time
SELECT created_at FROM app_versions WHERE app = $1 AND version = $2;

-- name: version_at
-- The version a Marathon timestamp names (rollback sends one back): exact, to the microsecond.
SELECT version FROM app_versions WHERE app = $1 AND created_at = $2 ORDER BY version DESC LIMIT 1;

-- name: open_deployments
-- Deployments in progress ($1 NULL: of every app), with the time of the version they roll out.
SELECT d.id, d.app, d.from_version, d.to_version, d.state, d.progress::text AS progress, v.created_at AS version_at
  FROM deployments d
  JOIN apps a ON a.id = d.app AND NOT a.deleted
  LEFT JOIN app_versions v ON v.app = d.app AND v.version = d.to_version
 WHERE d.state IN ('running', 'paused') AND ($1::text IS NULL OR d.app = $1)
 ORDER BY d.id;

-- name: desired_version
SELECT version FROM apps WHERE id = $1;

-- name: latest_deployment
-- The app's newest deployment, whatever its state, with the time of the version it rolls out.
SELECT d.id, d.app, d.from_version, d.to_version, d.state, v.created_at AS version_at
  FROM deployments d LEFT JOIN app_versions v ON v.app = d.app AND v.version = d.to_version
 WHERE d.app = $1
 ORDER BY d.id DESC LIMIT 1;

-- name: instance_states
-- The states of these instances ($1: ids), and why, for the tasks a stream saw end.
SELECT id, state, reason FROM instances WHERE id = ANY($1::text[]);

-- name: queue
-- Live apps waiting for instances: fewer live ones than desired, or a relaunch delayed by the
-- crash-loop backoff (launch_after in the future).
SELECT a.id, a.instances - COALESCE(n.live, 0) AS missing, a.launch_after,
       GREATEST(0, EXTRACT(EPOCH FROM a.launch_after - now()))::integer AS delay_s, a.updated_at
  FROM apps a
  LEFT JOIN (SELECT i.app, count(*) AS live FROM instances i
              WHERE i.desired = 'RUNNING' AND i.state NOT IN ('FAILED', 'KILLED', 'LOST')
              GROUP BY i.app) n ON n.app = a.id
 WHERE NOT a.deleted AND (a.instances > COALESCE(n.live, 0) OR a.launch_after > now())
 ORDER BY a.id;
