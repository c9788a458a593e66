-- Health checks (issue 5): the instance's last health verdict as hostd reported it, and the one
-- definition of "in service" every query uses.
-- healthy: NULL = no verdict yet (no checks, or none counted since the start).
ALTER TABLE instances ADD COLUMN IF NOT EXISTS healthy boolean;
ALTER TABLE instances ADD COLUMN IF NOT EXISTS health text NOT NULL DEFAULT '';

-- In service = RUNNING, and healthy when the instance's version has health checks.
-- ``spec`` is the app_versions spec of the instance's own version.
CREATE OR REPLACE FUNCTION noops_in_service(state text, healthy boolean, spec jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT state = 'RUNNING'
       AND (healthy IS TRUE OR jsonb_array_length(coalesce(spec -> 'health_checks', '[]'::jsonb)) = 0)
$$;
