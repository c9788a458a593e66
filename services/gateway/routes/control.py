"""Deployment control (restart, rollback, pause/resume/cancel, backoff reset, kill a given set)
and host control (drain, cordon).  Thin: validate, write desired state through ``control``,
kick the relay."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from services.gateway import control, views
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep, RelayDep
from services.gateway.errors import not_found
from services.gateway.models import (CancelRequest, DelayReset, DeploymentAction, HostFlags, KillRequest, Killing,
                                     NewVersion, RollbackRequest, RolledBack)
from services.gateway.params import AppIdPath, HostIdPath
from services.gateway.responses import CONFLICT, DocumentedRoute

router = APIRouter(tags=["control"], route_class=DocumentedRoute)


@router.post("/v1/apps/{app_id}/restart", status_code=202, response_model=NewVersion)
async def restart(app_id: AppIdPath, who: WhoDep, pool: PoolDep, q: QueriesDep, relay: RelayDep) -> dict[str, Any]:
    version = await control.restart(pool, q, app_id, by=who.name)
    relay.kick()
    return {"id": app_id, "version": version}


@router.post("/v1/apps/{app_id}/rollback", status_code=202, response_model=RolledBack)
async def rollback(app_id: AppIdPath, who: WhoDep, body: RollbackRequest, pool: PoolDep, q: QueriesDep,
                   relay: RelayDep) -> dict[str, Any]:
    version = await control.rollback(pool, q, app_id, body.version, by=who.name)
    relay.kick()
    return {"id": app_id, "version": version, "spec_of_version": body.version}


@router.post("/v1/apps/{app_id}/deployment/pause", responses=CONFLICT, response_model=DeploymentAction)
async def pause(app_id: AppIdPath, who: WhoDep, pool: PoolDep, q: QueriesDep, relay: RelayDep) -> dict[str, Any]:
    out = await control.deployment_state(pool, q, app_id, "pause", by=who.name)
    relay.kick()
    return out


@router.post("/v1/apps/{app_id}/deployment/resume", responses=CONFLICT, response_model=DeploymentAction)
async def resume(app_id: AppIdPath, who: WhoDep, pool: PoolDep, q: QueriesDep, relay: RelayDep) -> dict[str, Any]:
    out = await control.deployment_state(pool, q, app_id, "resume", by=who.name)
    relay.kick()
    return out


@router.post("/v1/apps/{app_id}/deployment/cancel", responses=CONFLICT, response_model=DeploymentAction)
async def cancel(app_id: AppIdPath, who: WhoDep, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                 body: CancelRequest | None = None) -> dict[str, Any]:
    out = await control.deployment_state(pool, q, app_id, "cancel", rollback=bool(body and body.rollback),
                                         by=who.name)
    relay.kick()
    return out


@router.get("/v1/apps/{app_id}/deployments")
async def deployments(app_id: AppIdPath, pool: PoolDep, q: QueriesDep,
                      limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    if await pool.fetchval(q.app_created_at, app_id) is None:
        raise not_found("app", app_id)
    return [views.deployment(r) for r in await pool.fetch(q.deployments_of, app_id, limit)]


@router.delete("/v1/apps/{app_id}/delay", response_model=DelayReset)
async def reset_delay(app_id: AppIdPath, who: WhoDep, pool: PoolDep, q: QueriesDep, relay: RelayDep) -> dict[str, Any]:
    await control.reset_delay(pool, q, app_id, by=who.name)
    relay.kick()
    return {"id": app_id, "backoff": {"delay_s": 0.0, "launch_after": None}}


@router.post("/v1/apps/{app_id}/kill", status_code=202, response_model=Killing)
async def kill(app_id: AppIdPath, who: WhoDep, body: KillRequest, pool: PoolDep, q: QueriesDep,
               relay: RelayDep) -> dict[str, Any]:
    killed = await control.kill_instances(pool, q, app_id, body.instances, scale=body.scale, by=who.name)
    relay.kick()
    return {"id": app_id, "killing": killed, "scaled": body.scale}


async def _host(host_id: str, flag: str, value: bool, pool: PoolDep, q: QueriesDep, relay: RelayDep,
                who: WhoDep) -> dict[str, Any]:
    out = await control.host_flag(pool, q, host_id, flag, value, by=who.name)
    relay.kick()
    return out


@router.post("/v1/hosts/{host_id}/drain", response_model=HostFlags)
async def drain(host_id: HostIdPath, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> dict[str, Any]:
    """Move the host's instances elsewhere, following each app's rolling-update knobs."""
    return await _host(host_id, "draining", True, pool, q, relay, who)


@router.delete("/v1/hosts/{host_id}/drain", response_model=HostFlags)
async def undrain(host_id: HostIdPath, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> dict[str, Any]:
    return await _host(host_id, "draining", False, pool, q, relay, who)


@router.post("/v1/hosts/{host_id}/cordon", response_model=HostFlags)
async def cordon(host_id: HostIdPath, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> dict[str, Any]:
    """No new placements on the host; what runs there stays."""
    return await _host(host_id, "cordoned", True, pool, q, relay, who)


@router.delete("/v1/hosts/{host_id}/cordon", response_model=HostFlags)
async def uncordon(host_id: HostIdPath, pool: PoolDep, q: QueriesDep, relay: RelayDep, who: WhoDep) -> dict[str, Any]:
    return await _host(host_id, "cordoned", False, pool, q, relay, who)
