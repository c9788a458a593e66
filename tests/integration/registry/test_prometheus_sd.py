"""A real Prometheus pointed at the gateway's /v1/discovery/prometheus sees in-service instances
appear with their labels, and disappear when they leave service."""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from devtools import infra
from devtools import sinks as sink_procs
from libs import outbox
from libs.settings import CommonSettings, GatewaySettings, HttpSettings
from services.gateway.app import create_app
from services.reconciler import views
from tests.integration.registry.taskrows import TaskRows
from tests.support.serve import serving
from tests.support.wait import eventually


@pytest_asyncio.fixture
async def gateway_url(cluster_cfg, pool, nc) -> AsyncIterator[str]:
    """The gateway app served over real HTTP (Prometheus must reach it), in this process."""
    port = infra.free_port()
    settings = GatewaySettings(common=dataclasses.replace(CommonSettings(), db_dsn=cluster_cfg.db_dsn),
                               http=HttpSettings(), port=port)
    app = create_app(settings, pool, nc, outbox.Relay(pool, nc.jetstream()))
    async with serving(app, port=port) as url:
        yield url


@pytest_asyncio.fixture
async def prometheus(gateway_url: str, tmp_path: Path, cluster_cfg) -> AsyncIterator[str]:
    (tmp_path / "logs").mkdir()
    # With the viewer token the session made for Prometheus, as `make up` gives it one.
    url = await asyncio.to_thread(sink_procs.start_prometheus, tmp_path, port=infra.free_port(),
                                  sd_url=f"{gateway_url}/v1/discovery/prometheus", refresh_s=1,
                                  token_file=cluster_cfg.prometheus_token_file)
    try:
        yield url
    finally:
        sink_procs.stop_prometheus(tmp_path)


async def test_prometheus_discovers_in_service_instances(pool, uid, prometheus, gateway_url):
    rows = TaskRows(pool)
    app = f"pm-{uid}"
    dead_port = infra.free_port()   # loopback port nobody listens on: scrapes fail fast, locally
    try:
        await rows.app(app, {"metrics": dead_port})
        await rows.instance(app, f"{app}-1", "127.0.0.1", host="h1")
        await rows.instance(app, f"{app}-2", "127.0.0.1", host="h2")
        await rows.instance(app, f"{app}-3", "127.0.0.1", state="STARTING")

        def ours() -> dict[str, dict]:
            return {t["labels"]["instance"]: t["labels"] for t in sink_procs.prometheus_targets(prometheus)
                    if t["labels"].get("app") == app}

        got = await eventually(lambda: (lambda o: o if set(o) == {f"{app}-1", f"{app}-2"} else None)(ours()),
                               timeout=30, what="targets discovered")
        assert got[f"{app}-2"] | {"job": "noops"} == {"app": app, "version": "1", "host": "h2", "instance": f"{app}-2",
                                                     "port_name": "metrics", "job": "noops"}
        # What the reconciler reads back from Prometheus (services/reconciler/views.py).
        async with httpx.AsyncClient(timeout=5) as http:
            seen, why = await views.prometheus_targets(http, prometheus, "noops")
            assert not why and {t for t in seen if t[0].startswith(f"{app}-")} == {(f"{app}-1", "metrics"),
                                                                                   (f"{app}-2", "metrics")}
            missing, why = await views.prometheus_targets(http, f"http://127.0.0.1:{dead_port}", "noops")
            assert missing is None and "prometheus" in why
        await rows.set_state(f"{app}-1", "KILLED")
        await eventually(lambda: set(ours()) == {f"{app}-2"}, timeout=30, what="target gone")
    finally:
        await rows.cleanup()
