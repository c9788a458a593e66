"""/v1/drift: what the reconciler found and did in its last rounds, and a round on demand.

The reconciler records every round in the task log (reconciler_rounds); this only reads it.  A
token limited to some apps sees the findings of those apps only, and none of the hosts'
(a container nobody placed belongs to no app it may see)."""
from __future__ import annotations

import json
from typing import Annotated, Any

import nats.errors
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from libs import messages, subjects
from services.gateway.auth import WhoDep
from services.gateway.deps import NatsDep, PoolDep, QueriesDep
from services.gateway.errors import ApiError
from services.gateway.responses import DocumentedRoute, error

router = APIRouter(prefix="/v1/drift", tags=["drift"], route_class=DocumentedRoute)


def _round(r: Any, who: Any, *, with_findings: bool) -> dict[str, Any]:
    out = {"id": r["id"], "started_at": r["started_at"].isoformat(), "finished_at": r["finished_at"].isoformat(),
           "dry_run": r["dry_run"], "trigger": r["trigger"], "counts": json.loads(r["counts"]),
           "actions": json.loads(r["actions"]), "errors": json.loads(r["errors"]),
           "timings": json.loads(r["timings"])}
    if with_findings:
        found = json.loads(r["findings"])
        out["findings"] = [f for f in found if (f.get("app") and who.sees(f["app"])) or who.apps is None]
        out["leader"] = {"holder": r["holder"], "fence": r["fence"]}
    return out


@router.get("")
async def drift(pool: PoolDep, q: QueriesDep, who: WhoDep,
                history: Annotated[int, Query(ge=0, le=100, description="Also this many earlier rounds, "
                                                                         "without their findings.")] = 0
                ) -> dict[str, Any]:
    """The last round: counts per kind, findings (kind, where, app, instance, detail, since, action),
    actions per kind and outcome, views that could not be read, seconds per step.  ``last`` is null before the first round."""
    latest = await pool.fetchrow(q.latest_round)
    out: dict[str, Any] = {"last": None if latest is None else _round(latest, who, with_findings=True)}
    if history:
        rows = await pool.fetch(q.recent_rounds, history + 1)
        out["history"] = [_round(r, who, with_findings=False) for r in rows[1:]]
    return out


@router.post("", status_code=202, responses=error(503, "The bus cannot be reached; retry."))
async def reconcile_now(nc: NatsDep, who: WhoDep) -> JSONResponse:
    """Ask the reconciler for a round now (it answers in GET /v1/drift when done)."""
    try:
        await nc.publish(subjects.RECONCILE_NOW, messages.encode(messages.ReconcileNow(reason=f"asked by {who.name}"[:100])))
        await nc.flush(timeout=2)
    except (nats.errors.Error, TimeoutError) as exc:
        raise ApiError(503, f"the bus is not reachable: {exc or type(exc).__name__}") from None
    return JSONResponse({"status": "requested"}, status_code=202)
