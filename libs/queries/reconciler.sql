-- name: recent_hosts
SELECT id FROM hosts WHERE last_seen > now() - make_interval(secs => $1) ORDER BY id;

-- name: silent_hosts
-- UP in the task log but silent: the placer should mark them DOWN (reported, not repaired here).
SELECT id FROM hosts WHERE state = 'UP' AND last_seen <= now() - make_interval(secs => $1) ORDER BY id;

-- name: live_instances
-- Instances that should have (or may still have) a container.  PENDING ones may not have
-- reached their host yet, so they are not counted as missing (see plan.py).
SELECT id, app, host, state, epoch, container_id FROM instances
WHERE state NOT IN ('FAILED', 'KILLED', 'LOST');

-- name: instances_named
-- The instances an inventory names that are not live (ended, or unknown: no row).
SELECT id, app, host, state, epoch, container_id FROM instances
WHERE id = ANY($1::text[]) AND state IN ('FAILED', 'KILLED', 'LOST');

-- name: lb_ports
SELECT app, port_name, port FROM lb_ports;

-- name: record_round
INSERT INTO reconciler_rounds (started_at, holder, fence, dry_run, trigger, counts, findings, actions, errors, timings)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8::jsonb, $9::jsonb, $10::jsonb)
RETURNING id;

-- name: trim_rounds
DELETE FROM reconciler_rounds WHERE id <= (SELECT max(id) FROM reconciler_rounds) - $1;

-- name: lose_missing
-- Still RUNNING in the task log although its host, asked in two rounds, has no running container for it.
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

-- name: leaked_addresses
-- Pool addresses (IPAM mode `pool`) held longer than $1 s by an instance that ended or does not
-- exist: every path that ends an instance releases its address in the same transaction, so these
-- are leaks.  Dry run: only listed.
SELECT a.instance, host(a.address) AS address FROM ipam_addresses a LEFT JOIN instances i ON i.id = a.instance
 WHERE a.instance IS NOT NULL AND a.taken_at < now() - make_interval(secs => $1)
   AND (i.id IS NULL OR i.state IN ('FAILED', 'KILLED', 'LOST'))
 ORDER BY a.address LIMIT $2;

-- name: release_leaked_addresses
UPDATE ipam_addresses a SET instance = NULL, taken_at = NULL
  FROM (SELECT a2.address, a2.instance AS was FROM ipam_addresses a2 LEFT JOIN instances i ON i.id = a2.instance
         WHERE a2.instance IS NOT NULL AND a2.taken_at < now() - make_interval(secs => $1)
           AND (i.id IS NULL OR i.state IN ('FAILED', 'KILLED', 'LOST'))
         ORDER BY a2.address LIMIT $2 FOR UPDATE OF a2 SKIP LOCKED) t
 WHERE a.address = t.address
RETURNING t.was AS instance, host(a.address) AS address;
