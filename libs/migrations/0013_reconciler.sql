-- The reconciler elects a leader like the placer (libs/leader.py): this row's token grows with
-- every new leader, and every repair it writes checks the token it acts under is still current.
CREATE TABLE IF NOT EXISTS reconciler_fence (
    id          integer PRIMARY KEY CHECK (id = 1),
    token       bigint NOT NULL,
    holder      text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- The last rounds of the reconciler, for GET /v1/drift: what it found, what it did, when.
-- Kept bounded by the reconciler itself (the newest NOOPS_RECONCILER_ROUNDS_KEPT).
CREATE TABLE IF NOT EXISTS reconciler_rounds (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    holder      text NOT NULL,
    fence       bigint NOT NULL,
    dry_run     boolean NOT NULL,
    trigger     text NOT NULL DEFAULT 'interval',
    counts      jsonb NOT NULL DEFAULT '{}',  -- finding kind -> number
    findings    jsonb NOT NULL DEFAULT '[]',  -- [{kind, where, instance, detail, since, action}], capped
    actions     jsonb NOT NULL DEFAULT '{}',  -- action kind -> {done, failed, skipped}
    errors      jsonb NOT NULL DEFAULT '[]'   -- views that could not be read this round
);
ALTER TABLE reconciler_rounds ADD COLUMN IF NOT EXISTS timings jsonb NOT NULL DEFAULT '{}';  -- step -> seconds
