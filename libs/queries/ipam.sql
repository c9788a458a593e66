-- Named queries of libs/ipam.py (IPAM mode `pool`).

-- name: add_range
-- Idempotent: addresses already known keep their holder.
INSERT INTO ipam_addresses (address, prefix)
SELECT $1::inet + g, $3::smallint FROM generate_series(0, $2::bigint - 1) AS g
ON CONFLICT (address) DO NOTHING;

-- name: held
SELECT instance, host(address) || '/' || prefix AS cidr
  FROM ipam_addresses WHERE instance = ANY($1::text[]);

-- name: take
-- $1 instances get the lowest free addresses, one each, skipping rows another transaction holds.
WITH free AS (
    SELECT address FROM ipam_addresses WHERE instance IS NULL
     ORDER BY address LIMIT cardinality($1::text[]) FOR UPDATE SKIP LOCKED
), pairs AS (
    SELECT f.address, i.instance
      FROM (SELECT address, row_number() OVER (ORDER BY address) AS n FROM free) f
      JOIN (SELECT instance, row_number() OVER () AS n FROM unnest($1::text[]) AS instance) i USING (n)
)
UPDATE ipam_addresses a SET instance = p.instance, taken_at = now()
  FROM pairs p WHERE a.address = p.address
RETURNING p.instance, host(a.address) || '/' || a.prefix AS cidr;

-- name: release
UPDATE ipam_addresses SET instance = NULL, taken_at = NULL WHERE instance = ANY($1::text[]);

-- name: free_count
SELECT count(*) FROM ipam_addresses WHERE instance IS NULL;
