"""/v2/apps: Marathon's app API over the same store functions as /v1/apps (docs/marathon.md).
Thin: translate the definition (``marathon.translate``), write through ``store`` / ``control``,
kick the relay, answer in Marathon's shapes.  Not in the OpenAPI document: Marathon's shapes
are Marathon's (its ids are paths, its errors another shape); docs/marathon.md describes them.

Ids are paths, so they are matched with ``{marathon_id:path}``; the routes with a suffix
(``/restart``, ``/tasks``) come first, so an app cannot be named ``.../restart``."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from libs.appspec import AppSpec
from services.gateway import control, store
from services.gateway.access import spec_for
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep, RelayDep, SettingsDep
from services.gateway.errors import ApiError
from services.gateway.marathon import ids, reads, shapes, translate
from services.gateway.marathon.errors import MarathonError, MarathonRoute, app_not_found, invalid
from services.gateway.marathon.http import app_id_of, deployment, embeds, encoded, json_body
from services.gateway.routes.apps import check_specs

router = APIRouter(prefix="/v2/apps", tags=["marathon"], route_class=MarathonRoute, include_in_schema=False)

Embed = Annotated[list[str], Query()]


def _label_match(labels: dict[str, str], selector: str) -> bool:
    """Marathon's ``label`` filter, one clause: ``key``, ``key==value`` or ``key!=value``."""
    if "!=" in selector:
        k, v = selector.split("!=", 1)
        return labels.get(k) != v
    if "==" in selector:
        k, v = selector.split("==", 1)
        return labels.get(k) == v
    return selector in labels


@router.get("")
async def list_apps(pool: PoolDep, q: QueriesDep, who: WhoDep, embed: Embed = [], id: str | None = None,  # noqa: A002
                    cmd: str | None = None, label: str | None = None) -> Response:
    e = embeds(embed)
    async with pool.acquire() as conn:
        out = await reads.apps(conn, q, who, embed_tasks="tasks" in e,
                               embed_failure=bool({"lastTaskFailure", "failures"} & e))
    if id:
        out = [a for a in out if id in a["id"]]
    if cmd:
        out = [a for a in out if a["cmd"] and cmd in a["cmd"]]
    if label:
        out = [a for a in out if all(_label_match(a["labels"], s.strip()) for s in label.split(","))]
    return encoded({"apps": out})


async def _created(pool: PoolDep, q: QueriesDep, who: WhoDep, spec: AppSpec, mid: str, version: int) -> JSONResponse:
    async with pool.acquire() as conn:
        [app] = await reads.apps(conn, q, who, spec.id, embed_tasks=False, embed_failure=False)
        result = await reads.result(conn, q, spec.id, version)
    app["deployments"] = [{"id": result["deploymentId"]}]
    return JSONResponse(app, status_code=201, headers={"Location": f"/v2/apps{mid}",
                                                       "Marathon-Deployment-Id": result["deploymentId"]})


async def _create(pool: PoolDep, q: QueriesDep, relay: RelayDep, settings: SettingsDep, who: WhoDep,
                  spec: AppSpec, mid: str) -> int:
    check_specs(who, [("", spec)])
    try:
        version = await store.create(pool, q, spec, max_instances=settings.max_instances, by=who.name)
    except ApiError as exc:
        if exc.status == 409:
            raise MarathonError(409, f"An app with id [{mid}] already exists.") from None
        raise
    relay.kick()
    return version


@router.post("")
async def create_app(request: Request, pool: PoolDep, q: QueriesDep, relay: RelayDep, settings: SettingsDep,
                     who: WhoDep) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise invalid([translate.problem("/id", "an app needs an id")])
    mid, app_id = app_id_of(body["id"], who)
    spec = translate.app_to_spec(body, app_id=app_id, base=None)
    version = await _create(pool, q, relay, settings, who, spec, mid)
    return await _created(pool, q, who, spec, mid, version)


async def _write(pool: PoolDep, q: QueriesDep, relay: RelayDep, settings: SettingsDep, who: WhoDep, mid: str,
                 app_id: str, body: Any, *, partial: bool, may_create: bool) -> tuple[int, dict[str, Any]]:
    """PUT/PATCH of one app: rollback, scale, update or create; (status, deployment result)."""
    if not isinstance(body, dict):
        raise invalid([translate.problem("/", "an app definition is a JSON object")])
    if "id" in body and (not isinstance(body["id"], str) or ids.collapse(body["id"]) != mid):
        raise invalid([translate.problem("/id", f"must be the id of the path ({mid}) or be left out")])
    async with pool.acquire() as conn:
        now = await reads.current(conn, q, app_id)
    if now is None:
        if not may_create:
            raise app_not_found(mid)
        spec = translate.app_to_spec({**body, "id": mid}, app_id=app_id, base=None)
        version = await _create(pool, q, relay, settings, who, spec, mid)
        status = 201
    else:
        base, service_ports = now
        version = await _change(pool, q, settings, who, mid, app_id, body, base if partial else None, service_ports)
        relay.kick()
        status = 200
    async with pool.acquire() as conn:
        return status, await reads.result(conn, q, app_id, version)


async def _change(pool: PoolDep, q: QueriesDep, settings: SettingsDep, who: WhoDep, mid: str, app_id: str,
                  body: dict[str, Any], base: AppSpec | None, service_ports: dict[str, int]) -> int:
    keys = set(body) - {"id"}
    if keys == {"version"}:   # marathon-python's rollback_app: the version to go back to
        at = ids.parse_timestamp(body["version"]) if isinstance(body["version"], str) else None
        version = at and await pool.fetchval(q.version_at, app_id, at)
        if not version:
            raise MarathonError(404, f"Version '{body['version']}' of app '{mid}' does not exist")
        return await control.rollback(pool, q, app_id, version, by=who.name)
    if keys == {"instances"} and base is not None:   # scale_app: the same write as PATCH /v1/apps
        n = body["instances"]
        if isinstance(n, bool) or not isinstance(n, int):
            raise invalid([translate.problem("/instances", "must be a whole number")])
        return await store.scale(pool, q, app_id, n, max_instances=settings.max_instances, by=who.name)
    spec = translate.app_to_spec(body, app_id=app_id, base=base, service_ports=service_ports)
    check_specs(who, [("", spec)])
    return await store.update(pool, q, spec, max_instances=settings.max_instances, by=who.name)


def _partial(value: str | None) -> bool:
    return value is None or value.lower() != "false"


@router.put("")
async def put_apps(request: Request, pool: PoolDep, q: QueriesDep, relay: RelayDep, settings: SettingsDep,
                   who: WhoDep, partialUpdate: str | None = None) -> JSONResponse:  # noqa: N803
    """Many apps, each created or updated in its own transaction, in order (not all-or-none:
    noops opens one deployment per app); answers the last deployment."""
    body = await json_body(request)
    if not isinstance(body, list) or not body:
        raise invalid([translate.problem("/", "a non-empty array of app definitions")])
    targets = []
    for i, app in enumerate(body):
        if not isinstance(app, dict) or not isinstance(app.get("id"), str):
            raise invalid([translate.problem(f"/{i}/id", "every app needs an id")])
        targets.append((*app_id_of(app["id"], who, f"/{i}/id"), app))
    result: dict[str, Any] = {}
    for mid, app_id, app in targets:
        _, result = await _write(pool, q, relay, settings, who, mid, app_id, app, partial=_partial(partialUpdate),
                                 may_create=True)
    return deployment(result)


@router.post("/{marathon_id:path}/restart")
async def restart_app(marathon_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                      force: str | None = None) -> JSONResponse:
    mid, app_id = app_id_of(marathon_id, who)
    try:
        version = await control.restart(pool, q, app_id, by=who.name)
    except ApiError as exc:
        raise app_not_found(mid) if exc.status == 404 else exc from None
    relay.kick()
    async with pool.acquire() as conn:
        return deployment(await reads.result(conn, q, app_id, version))


# Versions Marathon lists: the newest of noops' history (GET /v1/apps/{id}/versions has it all).
MAX_VERSIONS = 500


async def _versions(pool: PoolDep, q: QueriesDep, mid: str, app_id: str) -> list[Any]:
    if await pool.fetchval(q.app_created_at, app_id) is None:
        raise app_not_found(mid)
    return await pool.fetch(q.versions_of, app_id, MAX_VERSIONS)


@router.get("/{marathon_id:path}/versions")
async def app_versions(marathon_id: str, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    """Newest first, as timestamps (what ``PUT {"version": ts}`` rolls back to)."""
    mid, app_id = app_id_of(marathon_id, who)
    return {"versions": [ids.timestamp(r["created_at"]) for r in await _versions(pool, q, mid, app_id)]}


@router.get("/{marathon_id:path}/versions/{version}")
async def app_version(marathon_id: str, version: str, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    """The definition the app had at that version (no tasks or counts)."""
    mid, app_id = app_id_of(marathon_id, who)
    at = ids.parse_timestamp(version)
    for r in await _versions(pool, q, mid, app_id):
        if at is not None and r["created_at"] == at:
            ts = ids.timestamp(at)
            return {**shapes.definition(spec_for(who, app_id, json.loads(r["spec"]))), "version": ts,
                    "versionInfo": {"lastScalingAt": ts, "lastConfigChangeAt": ts}}
    raise MarathonError(404, f"Version '{version}' of app '{mid}' does not exist")


@router.get("/{marathon_id:path}")
async def get_app(marathon_id: str, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    mid, app_id = app_id_of(marathon_id, who)
    async with pool.acquire() as conn:
        out = await reads.apps(conn, q, who, app_id, embed_tasks=True, embed_failure=True)
    if not out:
        raise app_not_found(mid)
    return {"app": out[0]}


@router.put("/{marathon_id:path}")
async def put_app(marathon_id: str, request: Request, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                  settings: SettingsDep, who: WhoDep, force: str | None = None,
                  partialUpdate: str | None = None) -> JSONResponse:  # noqa: N803
    """Partial by default (``partialUpdate=false``: the body replaces the definition); creates
    an app that does not exist (201).  ``force`` is accepted: noops never locks an app (a new
    version supersedes the deployment in progress)."""
    mid, app_id = app_id_of(marathon_id, who)
    status, result = await _write(pool, q, relay, settings, who, mid, app_id, await json_body(request),
                                  partial=_partial(partialUpdate), may_create=True)
    return deployment(result, status)


@router.patch("/{marathon_id:path}")
async def patch_app(marathon_id: str, request: Request, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                    settings: SettingsDep, who: WhoDep, force: str | None = None) -> JSONResponse:
    mid, app_id = app_id_of(marathon_id, who)
    _, result = await _write(pool, q, relay, settings, who, mid, app_id, await json_body(request),
                             partial=True, may_create=False)
    return deployment(result)


@router.delete("/{marathon_id:path}")
async def delete_app(marathon_id: str, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep,
                     force: str | None = None) -> JSONResponse:
    """A delete makes no version: its deployment id names no deployment noops keeps."""
    mid, app_id = app_id_of(marathon_id, who)
    try:
        await store.delete(pool, q, app_id, by=who.name)
    except ApiError as exc:
        raise app_not_found(mid) if exc.status == 404 else exc from None
    relay.kick()
    return deployment({"deploymentId": str(uuid.uuid4()), "version": ids.timestamp(datetime.now(timezone.utc))})
