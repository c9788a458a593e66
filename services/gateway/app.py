"""``create_app``: the FastAPI application, wired to what ``main`` (or a test) connected."""
from __future__ import annotations

import asyncpg
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from libs import db, outbox
from libs.settings import GatewaySettings
from services.gateway import errors
from services.gateway.metrics import MetricsMiddleware
from services.gateway.routes import apps, control, discovery, events, hosts, instances, ops


def create_app(settings: GatewaySettings, pool: asyncpg.Pool, nc: NATS, relay: outbox.Relay) -> FastAPI:
    app = FastAPI(title="noops gateway", version="1", docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.pool = pool
    app.state.nc = nc
    app.state.relay = relay
    app.state.queries = db.Queries("gateway", "control")
    app.state.ui_html = ops.load_ui()
    errors.install(app)
    for module in (apps, instances, hosts, control, discovery, events, ops):
        app.include_router(module.router)
    app.add_middleware(MetricsMiddleware)
    return app
