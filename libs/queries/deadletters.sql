-- Named queries of the dead letters (libs/deadletters.py, the gateway's /v1/dead-letters).

-- name: record_dead_letter
-- A service's own record: it knows the error, so it replaces an advisory's record of the same message.
INSERT INTO dead_letters AS d (stream, consumer, stream_seq, subject, reason, error, deliveries, excerpt, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (stream, consumer, stream_seq) DO UPDATE
   SET subject = EXCLUDED.subject, reason = EXCLUDED.reason, error = EXCLUDED.error,
       deliveries = EXCLUDED.deliveries, excerpt = EXCLUDED.excerpt, source = EXCLUDED.source, at = now()
 WHERE d.source = 'advisory' OR EXCLUDED.source <> 'advisory'
RETURNING id;

-- name: list_dead_letters
-- Newest first; $2 NULL: every consumer.
SELECT id, stream, consumer, stream_seq, subject, reason, error, deliveries, excerpt, source, at
  FROM dead_letters
 WHERE $2::text IS NULL OR consumer = $2
 ORDER BY at DESC, id DESC
 LIMIT $1;
