-- The task log: the single source of truth for what should run where and what does.
CREATE TABLE IF NOT EXISTS apps (
    id          text PRIMARY KEY,
    version     integer NOT NULL,
    spec        jsonb NOT NULL,                 -- the current version's full app spec
    instances   integer NOT NULL,               -- desired count
    deleted     boolean NOT NULL DEFAULT false, -- DELETE asked; instances are being stopped
    status      text NOT NULL DEFAULT 'deploying',
    status_reason text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(), -- reset when a deleted id is created again
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS app_versions (
    app         text NOT NULL,
    version     integer NOT NULL,
    spec        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, version)
);

CREATE TABLE IF NOT EXISTS hosts (
    id          text PRIMARY KEY,
    cpus        double precision NOT NULL,
    mem_mb      integer NOT NULL,
    labels      jsonb NOT NULL DEFAULT '{}',
    load1       double precision NOT NULL DEFAULT 0,
    instances   integer NOT NULL DEFAULT 0,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS instances (
    id           text PRIMARY KEY,
    app          text NOT NULL,
    version      integer NOT NULL,
    host         text NOT NULL,
    epoch        bigint NOT NULL,               -- orders the commands sent for this instance
    cpus         double precision NOT NULL,     -- reserved on the host from placement on
    mem_mb       integer NOT NULL,
    desired      text NOT NULL DEFAULT 'RUNNING' CHECK (desired IN ('RUNNING', 'KILLED')),
    state        text NOT NULL DEFAULT 'PENDING'
                 CHECK (state IN ('PENDING', 'STARTING', 'RUNNING', 'FAILED', 'KILLED', 'LOST')),
    ip           text NOT NULL DEFAULT '',
    container_id text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS instances_app ON instances (app);
CREATE INDEX IF NOT EXISTS instances_host_active ON instances (host)
    WHERE state NOT IN ('FAILED', 'KILLED', 'LOST');

-- History of every state transition, for post-mortems and for tests that prove nothing was applied twice.
CREATE TABLE IF NOT EXISTS instance_events (
    id        bigserial PRIMARY KEY,
    instance  text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    state     text NOT NULL,
    reason    text NOT NULL DEFAULT '',
    source    text NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_events_instance ON instance_events (instance);

-- Transactional outbox: messages written in the same transaction as the state they announce,
-- published by a relay with Nats-Msg-Id = msg_id (JetStream drops a re-publish), then deleted.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial PRIMARY KEY,
    subject    text NOT NULL,
    msg_id     text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
