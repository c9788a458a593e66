"""``create_app``: the FastAPI application, wired to what ``main`` (or a test) connected."""
from __future__ import annotations

import asyncpg
from fastapi import Depends, FastAPI
from nats.aio.client import Client as NATS

from libs import db, outbox
from libs.service import Health
from libs.settings import GatewaySettings
from services.gateway import errors
from services.gateway.auth import authorize
from services.gateway.metrics import MetricsMiddleware
from services.gateway.limits import BodyLimit
from services.gateway.routes import (apps, control, deadletters, discovery, drift, events, hosts, instances,
                                     marathon_apps, marathon_events, marathon_misc, marathon_tasks, ops,
                                     tokens)

# Marathon's /v2 API (docs/marathon.md).  Tasks before apps: their paths end in /tasks, which the
# apps' {marathon_id:path} would swallow.
MARATHON = (marathon_tasks, marathon_apps, marathon_misc, marathon_events)


def create_app(settings: GatewaySettings, pool: asyncpg.Pool, nc: NATS, relay: outbox.Relay, *,
               health: Health | None = None) -> FastAPI:
    app = FastAPI(title="noops gateway", version="1", docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.health = health or Health()   # the gateway's supervised loops (the outbox relay)
    app.state.pool = pool
    app.state.nc = nc
    app.state.relay = relay
    app.state.queries = db.Queries("gateway", "control", "deadletters", "access", "drift", "marathon")
    app.state.ui_html = ops.load_ui()
    routers = [m.router for m in (apps, instances, hosts, control, discovery, events, drift, deadletters, tokens, ops,
                                  *MARATHON)]
    errors.install(app, [route for router in routers for route in router.routes])
    # Every route passes authorize(): its rule in policy.RULES decides (open, or the least role).
    for router in routers:
        app.include_router(router, dependencies=[Depends(authorize)])
    # The last added is the outermost: metrics see every answer, 413s included; the body limit
    # stands before FastAPI, so an oversized body is refused before anything parses it.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
