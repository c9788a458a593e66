-- Health verdicts are applied in the order hostd reached them, not in the order they arrive:
-- the time of the verdict now in healthy/health (hostd's clock, unix seconds; 0: none yet).
-- A verdict older than this one, redelivered or reordered, changes nothing (registry/judge.py).
ALTER TABLE instances ADD COLUMN IF NOT EXISTS health_at double precision NOT NULL DEFAULT 0;
