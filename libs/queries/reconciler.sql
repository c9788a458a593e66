-- name: recent_hosts
SELECT id FROM hosts WHERE last_seen > now() - make_interval(secs => $1) ORDER BY id;

-- name: placed_instances
-- Instances that should have (or may still have) a container.  PENDING ones may not have
-- reached their host yet, so they are not counted as missing (see diff.py).
SELECT id, host, state, container_id FROM instances
WHERE state NOT IN ('FAILED', 'KILLED', 'LOST');

-- name: lose_missing
-- Still RUNNING in the task log although its host, asked twice, has no running container for it.
UPDATE instances SET state = 'LOST', reason = 'container gone from ' || host || ' (found by the reconciler)',
       updated_at = now()
WHERE id = ANY($1::text[]) AND state = 'RUNNING'
RETURNING id, app, desired;

-- name: insert_events
INSERT INTO instance_events (instance, state, reason, source)
SELECT i, 'LOST', 'container gone (reconciler)', 'reconciler' FROM unnest($1::text[]) AS t(i);

-- name: release_lb_ports
-- Load-balancer ports of apps deleted longer ago than the retention go back to the range.
DELETE FROM lb_ports l USING apps a
WHERE a.id = l.app AND a.deleted AND a.updated_at < now() - make_interval(secs => $1)
RETURNING l.app, l.port_name, l.port;

-- name: fence_take
-- A new leader: the token grows, so writes of any earlier leader are refused.
INSERT INTO reconciler_fence (id, token, holder) VALUES (1, 1, $1)
ON CONFLICT (id) DO UPDATE SET token = reconciler_fence.token + 1, holder = $1, acquired_at = now()
RETURNING token;

-- name: fence_check
SELECT token FROM reconciler_fence WHERE id = 1 FOR SHARE;
