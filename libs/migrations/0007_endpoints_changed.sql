-- Apps whose in-service set changed and was not announced yet.  A report batch adds a row in its
-- own transaction (cheap, no read of the set); the registry's announcer deletes the rows and writes
-- one EndpointsChanged per app to the outbox in one transaction, so many batches touching a big
-- app cost one announcement (libs/endpoints.py).  Duplicates are allowed on purpose: no unique key,
-- so two batches in flight never wait for each other here.
CREATE TABLE IF NOT EXISTS endpoints_changed (
    id  bigserial PRIMARY KEY,
    app text NOT NULL
);
