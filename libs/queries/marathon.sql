-- Named queries of the gateway's Marathon /v2 layer (services/gateway/marathon): reads only;
-- every write goes through the same store and control functions as /v1.

-- name: live_tasks
-- Live instances ($1 NULL: of every live app) with the ports and the time of their own version:
-- what a Marathon task shows.  Only the current incarnation of each id, as apps_view counts.
SELECT i.id, i.app, i.version, i.host, i.state, i.desired, i.kill_requested, i.ip, i.healthy, i.health,
       i.created_at, i.updated_at, (v.spec -> 'ports')::text AS ports, v.created_at AS version_at,
       COALESCE(jsonb_array_length(v.spec -> 'health_checks'), 0) AS checks
  FROM instances i
  JOIN apps a ON a.id = i.app AND NOT a.deleted AND i.created_at >= a.created_at
  JOIN app_versions v ON v.app = i.app AND v.version = i.version
 WHERE i.state NOT IN ('FAILED', 'KILLED', 'LOST') AND ($1::text IS NULL OR i.app = $1)
 ORDER BY i.app, i.created_at, i.id;

-- name: version_times
-- When each live app's current version was made ($1 NULL: every app): Marathon's "version".
SELECT a.id AS app, a.version, v.created_at
  FROM apps a JOIN app_versions v ON v.app = a.id AND v.version = a.version
 WHERE NOT a.deleted AND ($1::text IS NULL OR a.id = $1);

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
-- The states of these instances ($1: ids), for the tasks a stream saw end.
SELECT id, state FROM instances WHERE id = ANY($1::text[]);
