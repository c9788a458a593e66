-- Dead letters: messages noops gave up on, for an operator to look at (GET /v1/dead-letters).
-- One row per (stream, consumer, stream_seq): a message terminated by a service and the server's
-- advisory about the same termination are one row; the service's record (it knows the error)
-- wins over the advisory's.  Outbox rows set aside are listed here too (stream '', consumer
-- 'outbox', stream_seq = the outbox row id).
CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigserial PRIMARY KEY,
    stream      text NOT NULL,
    consumer    text NOT NULL,
    stream_seq  bigint NOT NULL,
    subject     text NOT NULL DEFAULT '',
    reason      text NOT NULL,                -- handler_error, rejected, max_deliveries, terminated, publish_refused
    error       text NOT NULL DEFAULT '',
    deliveries  integer NOT NULL DEFAULT 0,
    excerpt     text NOT NULL DEFAULT '',     -- the first bytes of the payload, when still known
    source      text NOT NULL,                -- the service that recorded it, or 'advisory'
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, consumer, stream_seq)
);
CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters (at DESC);

-- Outbox rows NATS refused for a non-transient reason (payload too large, bad subject) count
-- their attempts; after NOOPS_OUTBOX_MAX_ATTEMPTS they move to outbox_set_aside, payload kept,
-- so the relay goes on with the rows after them.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS outbox_set_aside (
    id           bigint PRIMARY KEY,              -- the outbox row's id
    subject      text NOT NULL,
    msg_id       text NOT NULL,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    attempts     integer NOT NULL,
    reason       text NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
