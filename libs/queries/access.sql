-- Named queries of the gateway's tokens and audit trail (parameters only).

-- name: token_by_hash
-- The one lookup each authenticated request makes (unique index on hash).
SELECT name, role, apps FROM tokens
 WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());

-- name: create_token
-- A live name yields no row (→ 409); a revoked or expired one is taken over.
INSERT INTO tokens AS t (name, hash, role, apps, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE
   SET hash = EXCLUDED.hash, role = EXCLUDED.role, apps = EXCLUDED.apps, expires_at = EXCLUDED.expires_at,
       revoked_at = NULL, created_by = EXCLUDED.created_by, created_at = now()
 WHERE t.revoked_at IS NOT NULL OR t.expires_at <= now()
RETURNING name, role, apps, expires_at, created_by, created_at;

-- name: list_tokens
SELECT name, role, apps, expires_at, revoked_at, created_by, created_at,
       revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active
  FROM tokens ORDER BY name;

-- name: revoke_token
UPDATE tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING name;

-- name: token_name_active
SELECT name FROM tokens
 WHERE name = $1 AND hash = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());

-- name: insert_audit
INSERT INTO audit (token, action, target, detail) VALUES ($1, $2, $3, $4::jsonb);

-- name: list_audit
-- Newest first; $2/$3/$4 NULL: any target, token, action.
SELECT id, at, token, action, target, detail::text AS detail FROM audit
 WHERE ($2::text IS NULL OR target = $2) AND ($3::text IS NULL OR token = $3) AND ($4::text IS NULL OR action = $4)
 ORDER BY id DESC LIMIT $1;
