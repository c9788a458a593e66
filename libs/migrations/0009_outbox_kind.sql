-- Each relay claims only the subjects it owns (libs/outbox.py).  Claiming by a LIKE on the
-- subject made a relay with little to do walk every other relay's pending rows in id order on
-- each claim (100,000 placements waiting: ~20 ms a claim, most of PostgreSQL's time in the
-- placer benchmark).  The kind is the subject's second token (noops.<kind>.<id>), kept by
-- PostgreSQL itself; (kind, id) gives each relay its own rows, in order, from an index.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS kind text GENERATED ALWAYS AS (split_part(subject, '.', 2)) STORED;
CREATE INDEX IF NOT EXISTS outbox_kind_id ON outbox (kind, id);
