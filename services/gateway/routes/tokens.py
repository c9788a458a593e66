"""/v1/tokens and /v1/audit: API tokens (admin) and the trail of changes.  A token's secret is in
the answer to its creation only; lists show names, roles, scopes and expiry, never a secret."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.gateway import tokenstore
from services.gateway.access import Role
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep
from services.gateway.errors import ApiError, not_found
from services.gateway.models import TokenCreate
from services.gateway.params import TokenNamePath
from services.gateway.responses import CONFLICT, DocumentedRoute

router = APIRouter(tags=["access"], route_class=DocumentedRoute)


@router.post("/v1/tokens", status_code=201, responses=CONFLICT)
async def create_token(body: TokenCreate, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    """Answers the token with its secret in ``token``: store it now, it is not shown again."""
    now = datetime.now(timezone.utc)
    expires_at = body.expires_at if body.expires_in_s is None else now + timedelta(seconds=body.expires_in_s)
    if expires_at is not None and expires_at <= now:
        raise ApiError(422, "invalid request", [{"field": "expires_at", "reason": "is in the past"}])
    async with pool.acquire() as conn, conn.transaction():
        return await tokenstore.create(conn, q, name=body.name, role=Role[body.role], apps=body.apps,
                                       expires_at=expires_at, created_by=who.name)


@router.get("/v1/tokens")
async def list_tokens(pool: PoolDep, q: QueriesDep) -> list[dict[str, Any]]:
    """Every token, revoked and expired ones included (``active`` false), by name."""
    return [tokenstore.view(r) for r in await pool.fetch(q.list_tokens)]


@router.delete("/v1/tokens/{name}")
async def revoke_token(name: TokenNamePath, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    """Revoked at once: the next request with it is answered 401."""
    async with pool.acquire() as conn, conn.transaction():
        if not await tokenstore.revoke(conn, q, name, by=who.name):
            raise not_found("token", name)
    return {"name": name, "revoked": True}


@router.get("/v1/audit")
async def audit(pool: PoolDep, q: QueriesDep,
                target: Annotated[str | None, Query(max_length=128, pattern=r"^[^\x00-\x1f]*$", description="App, host or token name.")] = None,
                token: Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$", description="Changes made with this token.")] = None,
                action: Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00-\x1f]*$", description="e.g. app.scale")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """Changes made through the API, newest first: when, which token, what, to what."""
    return [tokenstore.audit_view(r) for r in await pool.fetch(q.list_audit, limit, target, token, action)]
