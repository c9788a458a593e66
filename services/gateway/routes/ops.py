"""/healthz, /metrics and the web UI at /."""
from __future__ import annotations

import asyncio
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from libs import db
from libs.service import metrics_response
from services.gateway.deps import NatsDep, PoolDep, QueriesDep

router = APIRouter(include_in_schema=False)

PING_TIMEOUT_S = 1.0


def load_ui() -> str:
    return resources.files("services.gateway").joinpath("static", "index.html").read_text()


@router.get("/healthz")
async def healthz(request: Request, pool: PoolDep, q: QueriesDep, nc: NatsDep) -> JSONResponse:
    # Checked live on every call: a gateway whose database went away must stop looking ready.
    try:
        db_ok = await asyncio.wait_for(pool.fetchval(q.ping), PING_TIMEOUT_S) == 1
    except (*db.TRANSIENT, asyncio.TimeoutError):
        db_ok = False
    loops = request.app.state.health.loops
    ready = db_ok and nc.is_connected and loops.all_alive
    body = {"ready": ready, "db": db_ok, "nats": nc.is_connected}
    if loops.states:
        body["loops"] = loops.as_dict()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return metrics_response()


@router.get("/")
async def ui(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.ui_html)
