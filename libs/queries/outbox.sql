-- Named queries of the transactional outbox (libs/outbox.py).

-- name: insert
-- The NOTIFY rides in the same statement: one round trip per enqueue.  Its payload is the kinds
-- written (the subjects' second tokens, as the kind column) and the writer (migration 0020), so
-- only the relay that owes them a publish wakes.
WITH added AS (INSERT INTO outbox (subject, msg_id, payload)
               SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]))
SELECT noops_outbox_notify($4, (SELECT string_agg(DISTINCT split_part(s, '.', 2), ',') FROM unnest($1::text[]) AS s));

-- name: claim_kinds
-- A relay claims the rows of the subject kinds it is due ($2; the subject's second token, a
-- generated column with an index on (kind, id): migration 0009), at most $1 of each kind, in
-- one statement: each kind through its own index range, then all in id order.
SELECT o.id, o.subject, o.msg_id, o.payload, o.attempts, o.kind
  FROM unnest($2::text[]) AS k(kind)
 CROSS JOIN LATERAL (SELECT id, subject, msg_id, payload, attempts, kind FROM outbox
                      WHERE outbox.kind = k.kind ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) AS o
 ORDER BY o.id;

-- name: claim_all
SELECT id, subject, msg_id, payload, attempts, kind FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED;

-- name: delete
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: count_failure
UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1;

-- name: set_aside
-- The row moves, payload and all, so an operator can look at it (or re-insert it) later.
WITH moved AS (DELETE FROM outbox WHERE id = $1 RETURNING id, subject, msg_id, payload, created_at, attempts)
INSERT INTO outbox_set_aside (id, subject, msg_id, payload, created_at, attempts, reason)
SELECT id, subject, msg_id, payload, created_at, attempts + 1, $2 FROM moved
ON CONFLICT (id) DO NOTHING;
