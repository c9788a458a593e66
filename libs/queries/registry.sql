-- name: read_instances
-- What the judge needs of each instance, and its row version (xmin): the batch is then written
-- only where the row is still that version (record_batch), so nothing is locked while judging.
-- has_checks: the instance's version has health checks (in service then needs healthy).
-- address: IPAM mode `pool`, the reserved address a report's ip must be.
-- The columns are services/registry/judge.py's Row fields, in their order, then the row version.
SELECT i.id, i.app, i.host, i.epoch, i.state, i.desired, i.ip, i.container_id, i.healthy, i.health, i.health_at,
       jsonb_array_length(coalesce(v.spec -> 'health_checks', '[]'::jsonb)) > 0 AS has_checks,
       i.address, i.version, i.xmin AS row_version
FROM instances i LEFT JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE i.id = ANY($1::text[]);

-- name: lock_instances
-- After record_batch found a row changed: the batch is judged again with its rows locked, so
-- that no concurrent writer slips a transition between the read and the write.  Ordered, so two
-- batches locking at once take the rows in the same order (no deadlock).
SELECT 1 FROM instances WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE;

-- name: record_batch
-- A report batch's writes in one statement (one round trip; every data-modifying CTE runs
-- whatever the final SELECT reads):
-- * the instances' new facts, each only where the row is still the version the batch was judged
--   against ($20, read_instances); if any is not, the statement fails as a whole
--   (noops_unchanged_or_fail, migration 0019: serialization_failure) and writes nothing.
--   $1 is in id order: concurrent batches take row locks in the same order.
--   mac/parent/lease_expires: the interface hostd gave the instance
--   (lease_expires 0 = none, NULL); healthy/health: written only by a report with health news
--   (health <> ''), others keep them; health_at: the time of the verdict they carry;
-- * their transitions (instance_events);
-- * the apps whose in-service set changed, for the announcer (endpoints_changed, see endpoints.sql);
-- * outbox rows: deploy requests for the placer, and the batch's instance change events (the
--   trigger of migration 0015 leaves the registry's transitions to these; the NOTIFY wakes the
--   relays, libs/outbox.py).
WITH applied AS (
    UPDATE instances AS i
    SET state = t.state, ip = t.ip, container_id = t.container_id, reason = t.reason, updated_at = now(),
        mac = t.mac, parent = t.parent,
        lease_expires = CASE WHEN t.lease_expires > 0 THEN to_timestamp(t.lease_expires) END,
        healthy = CASE WHEN t.health <> '' THEN t.healthy ELSE i.healthy END,
        health = CASE WHEN t.health <> '' THEN t.health ELSE i.health END,
        health_at = CASE WHEN t.health <> '' THEN t.health_at ELSE i.health_at END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::float8[], $9::boolean[], $10::text[], $19::float8[], $20::xid[])
         AS t(id, state, ip, container_id, reason, mac, parent, lease_expires, healthy, health, health_at, row_version)
    WHERE i.id = t.id AND i.xmin = t.row_version
    RETURNING 1
), events AS (
    INSERT INTO instance_events (instance, state, reason, source)
    SELECT e, s, r, 'registry' FROM unnest($11::text[], $12::text[], $13::text[]) AS t(e, s, r)
    RETURNING 1
), marked AS (
    INSERT INTO endpoints_changed (app) SELECT unnest($14::text[])
    RETURNING 1
), queued AS (
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT * FROM unnest($15::text[], $16::text[], $17::bytea[])
    RETURNING 1
)
SELECT noops_unchanged_or_fail((SELECT count(*) FROM applied) = cardinality($1::text[])) AS applied,
       CASE WHEN cardinality($15::text[]) > 0 THEN noops_outbox_notify($18, (SELECT string_agg(DISTINCT split_part(s, '.', 2), ',')
                                                                          FROM unnest($15::text[]) AS s)) END AS notified;

-- name: renew_leases
-- Only ever forward: a late report of an older lease does not shorten it.
UPDATE instances AS i SET lease_expires = to_timestamp(t.lease_expires)
FROM unnest($1::text[], $2::float8[]) AS t(id, lease_expires)
WHERE i.id = t.id AND (i.lease_expires IS NULL OR i.lease_expires < to_timestamp(t.lease_expires));

-- name: sinks_apps
-- Fan-out: the apps in $1 (NULL: all) with the port names of their current spec; deleted apps
-- too (their set is empty, their LB ports stay).
SELECT id, spec -> 'ports' AS ports FROM apps WHERE ($1::text[] IS NULL OR id = ANY($1::text[]));

-- name: sinks_lb_ports
SELECT app, port_name, bind_host, port FROM lb_ports
WHERE ($1::text[] IS NULL OR app = ANY($1::text[]));

-- name: assign_lb_port
-- The lowest free port of [$4, $5] on $3 for (app $1, port name $2); no row when taken meanwhile
-- (the caller re-reads) or when the range is full.
INSERT INTO lb_ports (app, port_name, bind_host, port)
SELECT $1, $2, $3, p FROM generate_series($4::integer, $5::integer) AS p
WHERE NOT EXISTS (SELECT 1 FROM lb_ports l WHERE l.bind_host = $3 AND l.port = p)
ORDER BY p LIMIT 1
ON CONFLICT DO NOTHING
RETURNING app, port_name, bind_host, port;
