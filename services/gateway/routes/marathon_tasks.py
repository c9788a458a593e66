"""/v2/apps/{id}/tasks and /v2/tasks: Marathon's task API over ``control.kill_instances`` (the
write POST /v1/apps/{id}/kill makes).  A task id is the noops instance id (it encodes the app:
marathon/ids.py).  ``wipe`` and ``force`` are accepted: noops has no resident tasks and no
deployment locks."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.gateway import control
from services.gateway.auth import WhoDep, require_app
from services.gateway.deps import PoolDep, QueriesDep, RelayDep
from services.gateway.errors import ApiError
from services.gateway.marathon import ids, reads, translate
from services.gateway.marathon.errors import MarathonError, MarathonRoute, app_not_found, invalid
from services.gateway.marathon.http import app_id_of, deployment, encoded, flag, json_body

router = APIRouter(tags=["marathon"], route_class=MarathonRoute, include_in_schema=False)


async def _app_tasks(pool: PoolDep, q: QueriesDep, who: WhoDep, mid: str, app_id: str) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        if await conn.fetchval(q.app_created_at, app_id) is None:
            raise app_not_found(mid)
        return await reads.tasks(conn, q, who.sees, app_id)


async def _kill(pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep, app_id: str, task_ids: list[str], *,
                scale: bool) -> dict[str, Any] | None:
    """Kill, then (with ``scale``) the deployment result of the version the scale-down made."""
    try:
        await control.kill_instances(pool, q, app_id, task_ids, scale=scale, by=who.name)
    except ApiError as exc:
        if exc.status == 422:  # not live instances of the app: Marathon says they do not exist
            raise MarathonError(404, f"Task(s) {', '.join(task_ids)} of app '{ids.to_marathon(app_id)}' "
                                     "do not exist (or are not running)") from None
        raise
    relay.kick()
    if not scale:
        return None
    async with pool.acquire() as conn:
        version = await conn.fetchval(q.desired_version, app_id)
        return await reads.result(conn, q, app_id, version)


@router.get("/v2/apps/{marathon_id:path}/tasks")
async def app_tasks(marathon_id: str, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    mid, app_id = app_id_of(marathon_id, who)
    return {"tasks": await _app_tasks(pool, q, who, mid, app_id)}


@router.delete("/v2/apps/{marathon_id:path}/tasks/{task_id}")
async def kill_task(marathon_id: str, task_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                    scale: str | None = None, wipe: str | None = None, force: str | None = None) -> JSONResponse:
    mid, app_id = app_id_of(marathon_id, who)
    found = [t for t in await _app_tasks(pool, q, who, mid, app_id) if t["id"] == task_id]
    if not found:
        raise MarathonError(404, f"Task '{task_id}' does not exist")
    result = await _kill(pool, q, relay, who, app_id, [task_id], scale=flag(scale))
    if result is not None:
        return deployment(result)
    return JSONResponse({"task": {**found[0], "state": "TASK_KILLING"}})


@router.delete("/v2/apps/{marathon_id:path}/tasks")
async def kill_app_tasks(marathon_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                         host: str | None = None, scale: str | None = None, wipe: str | None = None,
                         force: str | None = None) -> JSONResponse:
    mid, app_id = app_id_of(marathon_id, who)
    live = [t for t in await _app_tasks(pool, q, who, mid, app_id)
            if t["state"] != "TASK_KILLING" and (host is None or t["host"] == host)]
    if not live:
        return JSONResponse({"tasks": []})
    result = await _kill(pool, q, relay, who, app_id, [t["id"] for t in live], scale=flag(scale))
    if result is not None:
        return deployment(result)
    return JSONResponse({"tasks": [{**t, "state": "TASK_KILLING"} for t in live]})


@router.get("/v2/tasks")
async def all_tasks(pool: PoolDep, q: QueriesDep, who: WhoDep, status: str | None = None) -> Response:
    """``status``: running or staging (Marathon's filter); none: every live task."""
    want = {"running": {"TASK_RUNNING"}, "staging": {"TASK_STAGING"}}.get((status or "").lower())
    async with pool.acquire() as conn:
        out = await reads.tasks(conn, q, who.sees)
    return encoded({"tasks": [t for t in out if want is None or t["state"] in want]})


@router.post("/v2/tasks/delete")
async def kill_tasks(request: Request, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                     scale: str | None = None, wipe: str | None = None, force: str | None = None) -> JSONResponse:
    """Each app's tasks in one transaction (apps in id order); the scope of every app is
    checked before anything is killed."""
    body = await json_body(request)
    task_ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
        raise invalid([translate.problem("/ids", 'give {"ids": ["<task id>", ...]}')])
    per_app: dict[str, list[str]] = defaultdict(list)
    for i, t in enumerate(task_ids):
        app_id = ids.app_of_task(t)
        if app_id is None:
            raise invalid([translate.problem(f"/ids/{i}", f"{t[:100]!r} is not a task id noops made")])
        per_app[app_id].append(t)
    for app_id in per_app:
        require_app(who, app_id)
    result = None
    for app_id in sorted(per_app):
        result = await _kill(pool, q, relay, who, app_id, per_app[app_id], scale=flag(scale))
    return deployment(result) if result is not None else JSONResponse({"tasks": []})
