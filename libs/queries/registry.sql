-- name: lock_instances
-- Locked so that a concurrent writer cannot slip a transition between our read and write.
SELECT id, app, host, epoch, state, desired, ip, container_id
FROM instances WHERE id = ANY($1::text[]) FOR UPDATE;

-- name: apply_reports
UPDATE instances AS i
SET state = t.state, ip = t.ip, container_id = t.container_id, reason = t.reason, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(id, state, ip, container_id, reason)
WHERE i.id = t.id;

-- name: insert_events
INSERT INTO instance_events (instance, state, reason, source)
SELECT i, s, r, 'registry' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, s, r);

-- name: in_service
SELECT i.app, i.id, i.host, i.ip, a.spec -> 'ports' AS ports
FROM instances i JOIN apps a ON a.id = i.app
WHERE i.app = ANY($1::text[]) AND i.state = 'RUNNING'
ORDER BY i.app, i.id;

-- name: next_seq
SELECT nextval('endpoints_seq') FROM generate_series(1, $1);
