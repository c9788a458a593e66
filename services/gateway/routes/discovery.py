"""/v1/discovery: the in-service set for monitoring, read from the task log on each request."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway import views
from services.gateway.auth import WhoDep
from services.gateway.deps import PoolDep, QueriesDep
from services.gateway.responses import DocumentedRoute

router = APIRouter(prefix="/v1/discovery", tags=["discovery"], route_class=DocumentedRoute)


@router.get("/prometheus")
async def prometheus(pool: PoolDep, q: QueriesDep, who: WhoDep) -> list[dict[str, Any]]:
    """Prometheus HTTP SD (`http_sd_configs`): one group per in-service instance and named port
    (of the token's apps)."""
    return views.prometheus_targets(r for r in await pool.fetch(q.prometheus_targets) if who.sees(r["app"]))
