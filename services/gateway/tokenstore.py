"""Tokens and the audit trail in the task log: used by the API (routes/tokens.py, auth.py), the
``python -m services.gateway.tokens`` command and the bootstrap of ``make up`` and the tests."""
from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

import asyncpg

from libs import db
from services.gateway.access import TOKEN_PREFIX, Principal, Role, token_hash
from services.gateway.errors import ApiError

def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def lookup(conn: asyncpg.Pool | asyncpg.Connection, q: db.Queries, secret: str) -> Principal | None:
    row = await conn.fetchrow(q.token_by_hash, token_hash(secret))
    return None if row is None else Principal(row["name"], Role[row["role"]], row["apps"])


async def audit(conn: asyncpg.Connection, q: db.Queries, who: str, action: str, target: str,
                detail: dict[str, Any] | None = None) -> None:
    """One audit row; call it inside the change's transaction, so both commit or neither."""
    await conn.execute(q.insert_audit, who, action, target, json.dumps(detail or {}, separators=(",", ":")))


def view(row: asyncpg.Record) -> dict[str, Any]:
    """A token as the API shows it: never the secret, never its hash."""
    out = {"name": row["name"], "role": row["role"], "apps": row["apps"],
           "expires_at": _iso(row["expires_at"]), "created_by": row["created_by"],
           "created_at": _iso(row["created_at"])}
    if "active" in row.keys():
        out.update(active=row["active"], revoked_at=_iso(row["revoked_at"]))
    return out


def audit_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "at": _iso(row["at"]), "token": row["token"], "action": row["action"],
            "target": row["target"], "detail": json.loads(row["detail"])}


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


async def create(conn: asyncpg.Connection, q: db.Queries, *, name: str, role: Role, apps: str | None,
                 expires_at: datetime | None, created_by: str) -> dict[str, Any]:
    """A new token; its view plus ``token``, the secret, which is never shown again.  409 if a
    live token has the name.  Run inside a transaction (the audit row goes with it)."""
    secret = new_secret()
    row = await conn.fetchrow(q.create_token, name, token_hash(secret), role.name, apps, expires_at, created_by)
    if row is None:
        raise ApiError(409, f"token {name!r} already exists", [{"field": "name", "reason": "a live token has it"}])
    await audit(conn, q, created_by, "token.create", name, {"role": role.name, "apps": apps,
                                                            "expires_at": _iso(expires_at)})
    return {**view(row), "token": secret}


async def revoke(conn: asyncpg.Connection, q: db.Queries, name: str, *, by: str) -> bool:
    if await conn.fetchrow(q.revoke_token, name) is None:
        return False
    await audit(conn, q, by, "token.revoke", name)
    return True
