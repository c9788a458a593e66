"""/v1/instances: observed state of instances, as the registry last recorded it: one, or a page
of every app's the token sees (the cluster map reads them all; `host=` those of one host)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from libs.subjects import MAX_TOKEN, TOKEN_RE
from services.gateway import paging, views
from services.gateway.access import Principal
from services.gateway.auth import WhoDep, require_app
from services.gateway.deps import PoolDep, QueriesDep
from services.gateway.errors import not_found
from services.gateway.listing import CursorQuery, LimitQuery, PhaseQuery, one_page, start_key
from services.gateway.params import InstanceIdPath
from services.gateway.responses import DocumentedRoute

router = APIRouter(prefix="/v1/instances", tags=["instances"], route_class=DocumentedRoute)


def scope_like(who: Principal) -> str | None:
    """The token's app-id pattern as SQL LIKE (``*`` → ``%``); None for every app.  App ids and
    patterns have no ``%``, ``_`` or ``\\`` (access.PATTERN_RE), so nothing else needs escaping."""
    return None if who.apps is None else who.apps.replace("*", "%")


@router.get("")
async def list_instances(
        pool: PoolDep, q: QueriesDep, who: WhoDep, request: Request, response: Response,
        host: Annotated[str | None, Query(max_length=MAX_TOKEN, pattern=TOKEN_RE.pattern,
                                          description="Only instances placed on this host.")] = None,
        phase: PhaseQuery = None, limit: LimitQuery = paging.DEFAULT_LIMIT, cursor: CursorQuery = None,
) -> list[dict[str, Any]]:
    """Instances of every app the token may see, newest first, a page at a time (`X-Next-Cursor`
    and `Link` as for GET /v1/apps/{id}/instances).  An unknown host has none (200, empty)."""
    key = start_key(cursor)
    rows = await pool.fetch(q.instances_page, host, phase, scope_like(who), key and key.created_at,
                            key and key.id, limit + 1)
    return [views.instance(r) for r in one_page(rows, limit, request, response)]


@router.get("/{instance_id}")
async def get_instance(instance_id: InstanceIdPath, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    row = await pool.fetchrow(q.instance, instance_id)
    if row is None:
        raise not_found("instance", instance_id)
    require_app(who, row["app"])
    return views.instance(row)
