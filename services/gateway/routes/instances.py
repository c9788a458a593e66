"""/v1/instances: observed state of one instance, as the registry last recorded it."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway import views
from services.gateway.auth import WhoDep, require_app
from services.gateway.deps import PoolDep, QueriesDep
from services.gateway.errors import not_found
from services.gateway.params import InstanceIdPath
from services.gateway.responses import DocumentedRoute

router = APIRouter(prefix="/v1/instances", tags=["instances"], route_class=DocumentedRoute)


@router.get("/{instance_id}")
async def get_instance(instance_id: InstanceIdPath, pool: PoolDep, q: QueriesDep, who: WhoDep) -> dict[str, Any]:
    row = await pool.fetchrow(q.instance, instance_id)
    if row is None:
        raise not_found("instance", instance_id)
    require_app(who, row["app"])
    return views.instance(row)
