"""/v1/hosts: the pool as the placer sees it, with what placed instances reserve on each host.
A token limited to some apps sees the hosts with only its apps' instances counted."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway import views
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep, SettingsDep
from services.gateway.responses import DocumentedRoute

router = APIRouter(prefix="/v1/hosts", tags=["hosts"], route_class=DocumentedRoute)


@router.get("")
async def list_hosts(pool: PoolDep, q: QueriesDep, settings: SettingsDep, who: WhoDep) -> list[dict[str, Any]]:
    # "online" is decided by the database clock, so the gateway's own clock never matters.
    hosts = [views.host(r) for r in await pool.fetch(q.hosts_view, settings.host_online_s)]
    if who.apps is None:
        return hosts
    mine = [r for r in await pool.fetch(q.host_reservations_by_app) if who.sees(r["app"])]
    return views.hosts_for_apps(hosts, mine)
