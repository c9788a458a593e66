"""/v1/hosts: the pool as the placer sees it, with what placed instances reserve on each host, and
what each host's instances use (asked of the host's hostd).  A token limited to some apps sees the
hosts with only its apps' instances counted, and only their usage."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway import usage, views
from services.gateway.auth import WhoDep
from services.gateway.deps import NatsDep, PoolDep, QueriesDep, SettingsDep
from services.gateway.errors import not_found
from services.gateway.models import HostUsage
from services.gateway.params import HostIdPath
from services.gateway.responses import DocumentedRoute, error

router = APIRouter(prefix="/v1/hosts", tags=["hosts"], route_class=DocumentedRoute)


@router.get("")
async def list_hosts(pool: PoolDep, q: QueriesDep, settings: SettingsDep, who: WhoDep) -> list[dict[str, Any]]:
    # "online" is decided by the database clock, so the gateway's own clock never matters.
    hosts = [views.host(r) for r in await pool.fetch(q.hosts_view, settings.host_online_s)]
    if who.apps is None:
        return hosts
    mine = [r for r in await pool.fetch(q.host_reservations_by_app) if who.sees(r["app"])]
    return views.hosts_for_apps(hosts, mine)


@router.get("/{host_id}/usage", response_model=HostUsage,
            responses=error(503, "The host did not answer within NOOPS_GATEWAY_USAGE_TIMEOUT_S (or the task log "
                                 "cannot be reached); retry."))
async def host_usage(host_id: HostIdPath, pool: PoolDep, q: QueriesDep, nc: NatsDep, settings: SettingsDep,
                     who: WhoDep) -> dict[str, Any]:
    """CPU and memory of the host's instances whose image runs noops-init, as its hostd last
    scraped them (every NOOPS_HOSTD_INIT_STATS_INTERVAL_S)."""
    if not await pool.fetchval(q.host_known, host_id):
        raise not_found("host", host_id)
    return usage.view(await usage.ask(nc, host_id, timeout_s=settings.usage_timeout_s), who)
