-- Named queries of the gateway's deployment and host controls (parameters only).

-- name: restart_app
-- A restart is a new version whose containers differ only by the restart generation.
UPDATE apps SET version = version + 1, restart_gen = restart_gen + 1, status = 'deploying', updated_at = now()
WHERE id = $1 AND NOT deleted
RETURNING id, version;

-- name: rollback_to
WITH src AS (SELECT spec FROM app_versions WHERE app = $1 AND version = $2)
UPDATE apps SET version = version + 1, spec = src.spec, instances = (src.spec ->> 'instances')::int,
       status = 'deploying', updated_at = now()
FROM src WHERE apps.id = $1 AND NOT apps.deleted
RETURNING apps.id, apps.version;

-- name: version_exists
SELECT 1 FROM app_versions WHERE app = $1 AND version = $2;

-- name: open_deployment
SELECT id, from_version, to_version, state FROM deployments
WHERE app = $1 AND state IN ('running', 'paused') FOR UPDATE;

-- name: set_deployment_state
UPDATE deployments SET state = $2, reason = $3, updated_at = now(),
       progress_at = CASE WHEN $2 = 'running' THEN now() ELSE progress_at END
WHERE id = $1;

-- name: deployments_of
-- created_by: who made the version the deployment rolls out (the placer opens deployments).
SELECT d.id, d.from_version, d.to_version, d.state, d.reason, d.progress::text AS progress, d.created_at,
       d.updated_at, d.progress_at, COALESCE(v.created_by, '') AS created_by
FROM deployments d LEFT JOIN app_versions v ON v.app = d.app AND v.version = d.to_version
WHERE d.app = $1 ORDER BY d.id DESC LIMIT $2;

-- name: reset_delay
UPDATE apps SET backoff_delay_s = 0, launch_after = NULL,
       failures_seen = coalesce((SELECT f.failures FROM app_failures f
                                  WHERE f.app = apps.id AND f.incarnation = apps.created_at), 0)
WHERE id = $1 AND NOT deleted
RETURNING id;

-- name: request_kill
-- Only live instances of this app; returns those marked.
UPDATE instances SET kill_requested = true, updated_at = now()
WHERE app = $1 AND id = ANY($2::text[]) AND desired = 'RUNNING' AND state NOT IN ('FAILED', 'KILLED', 'LOST')
RETURNING id;

-- name: set_host_flag
UPDATE hosts SET draining = CASE WHEN $2 = 'draining' THEN $3 ELSE draining END,
                 cordoned = CASE WHEN $2 = 'cordoned' THEN $3 ELSE cordoned END
WHERE id = $1
RETURNING id, draining, cordoned;

-- name: apps_on_host
SELECT DISTINCT app FROM instances
WHERE host = $1 AND desired = 'RUNNING' AND state NOT IN ('FAILED', 'KILLED', 'LOST');

-- name: desired_count
SELECT instances FROM apps WHERE id = $1 FOR UPDATE;
