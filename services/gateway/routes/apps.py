"""/v1/apps: desired state.  Handlers validate, write through ``store`` (one transaction each, with
the deploy request in the outbox), kick the relay, and answer; no scheduling happens here.
The token's app scope is checked for the path's app by ``auth.authorize`` and here for a spec's id;
``env`` values are shown only to tokens that may change the app (``access.spec_for``)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse

from libs.appspec import AppSpec
from libs.messages import STATES
from services.gateway import paging, store, views
from services.gateway.access import Principal, cap_add_problems, spec_for
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep, RelayDep, SettingsDep
from services.gateway.errors import ApiError, invalid_spec, not_found
from services.gateway.listing import CursorQuery, LimitQuery, PhaseQuery, one_page, start_key
from services.gateway.models import AppUpdate, BulkCreated, Deleting, ScaleRequest
from services.gateway.params import AppIdPath
from services.gateway.responses import CONFLICT, DocumentedRoute

router = APIRouter(prefix="/v1/apps", tags=["apps"], route_class=DocumentedRoute)

# Apps per bulk create: one transaction, so a request holds its locks for a bounded time.
BULK_MAX_APPS = 1000


def _app_view(who: Principal, row: Any) -> dict[str, Any]:
    out = views.app(row)
    return {**out, "spec": spec_for(who, out["id"], out["spec"])}


async def _view(pool: PoolDep, q: QueriesDep, app_id: str, who: Principal) -> dict[str, Any]:
    row = await pool.fetchrow(q.apps_view, app_id)
    if row is None:
        raise not_found("app", app_id)
    return views.with_lb(_app_view(who, row), await pool.fetch(q.lb_ports, app_id))


def check_specs(who: Principal, specs: list[tuple[str, AppSpec]]) -> None:
    """Scope first (an app out of scope refuses the whole request), then added capabilities."""
    out = [{"field": f"{prefix}id", "reason": f"token {who.name!r} is limited to apps {who.apps!r}"}
           for prefix, s in specs if not who.sees(s.id)]
    if out:
        raise ApiError(403, "forbidden", out)
    caps = cap_add_problems(who, specs)
    if caps:
        raise ApiError(403, "forbidden", caps)


@router.post("", status_code=201, responses=CONFLICT)
async def create_app(spec: AppSpec, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                     settings: SettingsDep, who: WhoDep) -> dict[str, Any]:
    check_specs(who, [("", spec)])
    await store.create(pool, q, spec, max_instances=settings.max_instances, by=who.name)
    relay.kick()  # after commit: the row is visible to the relay now
    return await _view(pool, q, spec.id, who)


@router.post("/bulk", status_code=201, responses=CONFLICT, response_model=BulkCreated)
async def create_apps(specs: Annotated[list[AppSpec], Body(min_length=1, max_length=BULK_MAX_APPS)], pool: PoolDep,
                      q: QueriesDep, relay: RelayDep, settings: SettingsDep, who: WhoDep) -> dict[str, Any]:
    """Many apps in one transaction, all or none; answers ids and versions, not whole views
    (read them with GET), so a large batch costs no per-app reads.  One app out of the token's
    scope refuses them all (403)."""
    check_specs(who, [(f"{i}.", s) for i, s in enumerate(specs)])
    versions = await store.create_many(pool, q, specs, max_instances=settings.max_instances, by=who.name)
    relay.kick()
    return {"created": [{"id": s.id, "version": v} for s, v in zip(specs, versions)]}


@router.put("/{app_id}")
async def replace_app(app_id: AppIdPath, body: AppUpdate, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                      settings: SettingsDep, who: WhoDep) -> dict[str, Any]:
    if body.id is not None and body.id != app_id:
        raise invalid_spec("id", f"must equal the app id in the path ({app_id!r}) or be left out")
    spec = body.for_app(app_id)
    check_specs(who, [("", spec)])
    await store.update(pool, q, spec, max_instances=settings.max_instances, by=who.name)
    relay.kick()
    return await _view(pool, q, app_id, who)


@router.patch("/{app_id}")
async def scale_app(app_id: AppIdPath, body: ScaleRequest, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                    settings: SettingsDep, who: WhoDep) -> dict[str, Any]:
    await store.scale(pool, q, app_id, body.instances, max_instances=settings.max_instances, by=who.name)
    relay.kick()
    return await _view(pool, q, app_id, who)


@router.delete("/{app_id}", status_code=202, response_model=Deleting)
async def delete_app(app_id: AppIdPath, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> JSONResponse:
    await store.delete(pool, q, app_id, by=who.name)
    relay.kick()
    return JSONResponse({"id": app_id, "status": "deleting"}, status_code=202)


@router.get("")
async def list_apps(pool: PoolDep, q: QueriesDep, who: WhoDep) -> list[dict[str, Any]]:
    """The live apps the token's scope covers."""
    async with pool.acquire() as conn:
        rows, lb = await conn.fetch(q.apps_view, None), await conn.fetch(q.lb_ports, None)
    return [views.with_lb(_app_view(who, r), lb) for r in rows if who.sees(r["id"])]


@router.get("/{app_id}")
async def get_app(app_id: AppIdPath, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    return await _view(pool, q, app_id, who)


@router.get("/{app_id}/versions")
async def app_versions(app_id: AppIdPath, pool: PoolDep, q: QueriesDep, who: WhoDep,
                       limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    """Version history, newest first: each version's spec and the token that made it."""
    if await pool.fetchval(q.app_created_at, app_id) is None:
        raise not_found("app", app_id)
    return [{**v, "spec": spec_for(who, app_id, v["spec"])}
            for v in map(views.version, await pool.fetch(q.versions_of, app_id, limit))]


@router.get("/{app_id}/instances")
async def app_instances(
        app_id: AppIdPath, pool: PoolDep, q: QueriesDep, request: Request, response: Response,
        state: Annotated[str | None, Query(pattern=f"^({'|'.join(STATES)})$",
                                           description="Only instances in this state.")] = None,
        phase: PhaseQuery = None, limit: LimitQuery = paging.DEFAULT_LIMIT, cursor: CursorQuery = None,
) -> list[dict[str, Any]]:
    """The app's instances, newest first, a page at a time.  When more follow, the answer carries
    `X-Next-Cursor` (pass it as `cursor`) and `Link: <...>; rel="next"` (the same query, next page);
    the last page has neither.  Pages are stable: instances created meanwhile are newer and do not
    shift them."""
    key = start_key(cursor)
    async with pool.acquire() as conn:
        created_at = await conn.fetchval(q.app_created_at, app_id)
        if created_at is None:
            raise not_found("app", app_id)
        # One row more than the page: whether a next page exists, without a count.
        rows = await conn.fetch(q.app_instances, app_id, created_at, state, phase,
                                key and key.created_at, key and key.id, limit + 1)
    return [views.instance(r) for r in one_page(rows, limit, request, response)]
