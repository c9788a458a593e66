-- Named queries of the reconciler's rounds as the gateway shows them (GET /v1/drift).

-- name: latest_round
SELECT id, started_at, finished_at, holder, fence, dry_run, trigger, counts, findings, actions, errors, timings
  FROM reconciler_rounds ORDER BY id DESC LIMIT 1;

-- name: recent_rounds
SELECT id, started_at, finished_at, dry_run, trigger, counts, actions, errors, timings
  FROM reconciler_rounds ORDER BY id DESC LIMIT $1;
