-- name: in_service
-- THE in-service set (announcements, every sink): the apps in $1 (NULL: all).  The rule itself
-- is noops_in_service() (migration 0006): RUNNING, and healthy when the version has checks.
-- Ports and checks come from each instance's own version (a rolling update may mix versions).
SELECT i.app, i.id, i.host, i.ip, i.version, v.spec -> 'ports' AS ports
FROM instances i JOIN app_versions v ON v.app = i.app AND v.version = i.version
WHERE ($1::text[] IS NULL OR i.app = ANY($1::text[])) 
  AND noops_in_service(i.state, i.healthy, v.spec)
ORDER BY i.app, i.id;

-- name: next_seqs
SELECT nextval('endpoints_seq') FROM generate_series(1, $1);
