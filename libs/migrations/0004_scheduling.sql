-- Scheduling: host liveness and operator state, reservations of every resource, deployments,
-- crash-loop backoff, and the placer's fencing token.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'UP';
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS draining boolean NOT NULL DEFAULT false;
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS cordoned boolean NOT NULL DEFAULT false;
-- Bumped when the host is marked DOWN: placements made before carry an older epoch.
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 1;
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS state_changed_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS disk_free_mb jsonb NOT NULL DEFAULT '{}';
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS addresses_free integer NOT NULL DEFAULT -1;
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS egress_mbit integer NOT NULL DEFAULT 0;

ALTER TABLE instances ADD COLUMN IF NOT EXISTS disk_mb integer NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN IF NOT EXISTS egress_mbit integer NOT NULL DEFAULT 0;
-- The fencing token of the placer that placed it (post-mortems: which leader did this).
ALTER TABLE instances ADD COLUMN IF NOT EXISTS fence bigint NOT NULL DEFAULT 0;

ALTER TABLE apps ADD COLUMN IF NOT EXISTS restart_gen integer NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS last_good_version integer;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS backoff_delay_s double precision NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS launch_after timestamptz;
ALTER TABLE apps ADD COLUMN IF NOT EXISTS failures_seen integer NOT NULL DEFAULT 0;
ALTER TABLE app_versions ADD COLUMN IF NOT EXISTS restart_gen integer NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS deployments (
    id           bigserial PRIMARY KEY,
    app          text NOT NULL,
    from_version integer,                      -- the last good version when it started
    to_version   integer NOT NULL,
    state        text NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'paused', 'succeeded', 'failed', 'cancelled', 'superseded')),
    reason       text NOT NULL DEFAULT '',
    progress     jsonb NOT NULL DEFAULT '{}',  -- {"new_running": n, "old_live": n, "target": n}
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    progress_at  timestamptz NOT NULL DEFAULT now()  -- last time the progress moved
);
CREATE INDEX IF NOT EXISTS deployments_app ON deployments (app, id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS deployments_one_open ON deployments (app) WHERE state IN ('running', 'paused');

-- Leader election is a PostgreSQL advisory lock; this row's token grows with every new leader,
-- and a plan commits only while the token it was made under is still the current one.
CREATE TABLE IF NOT EXISTS placer_fence (
    id          integer PRIMARY KEY CHECK (id = 1),
    token       bigint NOT NULL,
    holder      text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- An operator asked for these particular instances to go (scale down "a given set").
ALTER TABLE instances ADD COLUMN IF NOT EXISTS kill_requested boolean NOT NULL DEFAULT false;

-- Every heartbeat rewrites its host's row: leave room on each page so the update stays
-- heap-only (HOT) and the table does not bloat between vacuums.
ALTER TABLE hosts SET (fillfactor = 50);

-- How the host's containers get addresses: "dhcp" (hostd asks the segment's DHCP server) or
-- "pool" (the placer reserves one from ipam_addresses with the placement).
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS ipam text NOT NULL DEFAULT 'dhcp';
