-- Outbox payloads over ~2 kB (an app's change events, 64 a message; a big app's complete
-- in-service set in EndpointsChanged) are compressed as they are written and read back once by
-- the relay: lz4 does that at about half pglz's cost (8 MB of such payloads: 80-140 ms against
-- 105-275 ms), for a little less compression.  Rows written before keep pglz; both read the same.
-- A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 not available: outbox payloads stay pglz';
END
$$;
