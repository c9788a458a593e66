"""/v2/deployments, /v2/queue, /v2/info, /v2/leader and /ping of Marathon's API (docs/marathon.md).

A deployment id is ``<app>.<version>`` (marathon/ids.py).  DELETE without ``force`` is
Marathon's revert: noops cancels the deployment and rolls the app back to the version it had
before (``control.deployment_state`` with rollback, as POST /v1/apps/{id}/deployment/cancel);
``force=true`` abandons it where it stands (202, empty body)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from services.gateway import control
from services.gateway.auth import WhoDep, require_app
from services.gateway.deps import PoolDep, QueriesDep, RelayDep, SettingsDep
from services.gateway.errors import ApiError
from services.gateway.marathon import ids, reads, shapes
from services.gateway.marathon.errors import MarathonError, MarathonRoute, app_not_found
from services.gateway.marathon.http import app_id_of, deployment, flag

router = APIRouter(tags=["marathon"], route_class=MarathonRoute, include_in_schema=False)


@router.get("/v2/deployments")
async def deployments(pool: PoolDep, q: QueriesDep, who: WhoDep) -> list[dict[str, Any]]:
    return [shapes.deployment(r) for r in await pool.fetch(q.open_deployments, None) if who.sees(r["app"])]


@router.delete("/v2/deployments/{deployment_id}")
async def cancel_deployment(deployment_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                            force: str | None = None) -> Response:
    parsed = ids.parse_deployment_id(deployment_id)
    gone = MarathonError(404, f"DeploymentPlan {deployment_id} does not exist")
    if parsed is None:
        raise gone
    app_id, version = parsed
    require_app(who, app_id)
    rows = await pool.fetch(q.open_deployments, app_id)
    if not any(r["to_version"] == version for r in rows):
        raise gone
    rollback = not flag(force)
    await control.deployment_state(pool, q, app_id, "cancel", rollback=rollback, by=who.name)
    relay.kick()
    if not rollback:
        return Response(status_code=202)
    async with pool.acquire() as conn:
        return deployment(await reads.result(conn, q, app_id, await conn.fetchval(q.desired_version, app_id)))


# Apps the queue answers at most (each is read whole, like GET /v2/apps/{id}).
MAX_QUEUE = 1000


@router.get("/v2/queue")
async def queue(pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    """Apps waiting for instances (``count``: how many are missing) or for their crash-loop
    backoff (``delay.timeLeftSeconds``)."""
    async with pool.acquire() as conn:
        rows = [r for r in await conn.fetch(q.queue) if who.sees(r["id"])][:MAX_QUEUE]
        items = []
        for r in rows:
            found = await reads.apps(conn, q, who, r["id"], embed_tasks=False, embed_failure=False)
            if found:
                items.append({"app": found[0], "count": max(0, r["missing"]), "since": ids.timestamp(r["updated_at"]),
                              "delay": {"timeLeftSeconds": r["delay_s"], "overdue": False}})
    return {"queue": items}


@router.delete("/v2/queue/{marathon_id:path}/delay", status_code=204)
async def reset_delay(marathon_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> Response:
    """The same as DELETE /v1/apps/{id}/delay: relaunch now."""
    mid, app_id = app_id_of(marathon_id, who)
    try:
        await control.reset_delay(pool, q, app_id, by=who.name)
    except ApiError as exc:
        raise app_not_found(mid) if exc.status == 404 else exc from None
    relay.kick()
    return Response(status_code=204)


@router.get("/v2/info")
async def info(request: Request, settings: SettingsDep) -> dict[str, Any]:
    return shapes.info(leader=request.url.netloc, framework_id=settings.common.cluster, http_port=settings.port)


@router.get("/v2/leader")
async def leader(request: Request) -> JSONResponse:
    # Every gateway answers for the whole cluster: the one asked is as good a leader as any.
    return JSONResponse({"leader": request.url.netloc})


@router.get("/ping")
async def ping() -> PlainTextResponse:
    return PlainTextResponse("pong")
