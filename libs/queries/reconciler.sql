-- name: recent_hosts
SELECT id FROM hosts WHERE last_seen > now() - make_interval(secs => $1) ORDER BY id;

-- name: placed_instances
-- Instances that should have (or may still have) a container.  PENDING ones may not have
-- reached their host yet, so they are not counted as missing (see diff.py).
SELECT id, host, state, container_id FROM instances
WHERE state NOT IN ('FAILED', 'KILLED', 'LOST');
