-- Access control for the gateway (services/gateway/access.py, policy.py).
-- API tokens: the secret is shown once at creation and never stored; only its sha256 is (a
-- random 256-bit secret needs no salt or slow hash, see access.token_hash).  A revoked or
-- expired token's name may be given to a new token; until then it stays, for the audit trail.
CREATE TABLE IF NOT EXISTS tokens (
    name        text PRIMARY KEY,
    hash        text NOT NULL UNIQUE,            -- the per-request lookup key
    role        text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    apps        text,                            -- app-id glob ('payments-*'); NULL: every app
    expires_at  timestamptz,                     -- NULL: never
    revoked_at  timestamptz,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change made through the API, written in the change's own transaction.
CREATE TABLE IF NOT EXISTS audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    token   text NOT NULL,                       -- the token's name
    action  text NOT NULL,                       -- app.create, app.scale, host.drain, token.revoke...
    target  text NOT NULL,                       -- app id, host id or token name
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, id);

-- Who made each version ('' for versions from before access control, or made by noops itself).
-- A deployment is made by the placer for a new version, so its author is its to_version's.
ALTER TABLE app_versions ADD COLUMN IF NOT EXISTS created_by text NOT NULL DEFAULT '';
