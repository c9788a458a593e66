"""The one in-service rule in the task log (noops_in_service, migration 0006): RUNNING, and
healthy when the instance's own version has health checks -- as every reader sees it."""
from __future__ import annotations

import json

import asyncpg
import pytest

from libs import endpoints
from libs.db import Queries
from tests.integration.registry.taskrows import TaskRows

CHECK = {"protocol": "HTTP", "port_name": "http", "path": "/"}



@pytest.mark.parametrize(("checks", "state", "healthy", "serving"), [
    pytest.param([], "RUNNING", None, True, id="no-checks-running"),
    pytest.param([CHECK], "RUNNING", None, False, id="checks-no-verdict"),
    pytest.param([CHECK], "RUNNING", True, True, id="checks-healthy"),
    pytest.param([CHECK], "RUNNING", False, False, id="checks-unhealthy"),
    pytest.param([CHECK], "FAILED", True, False, id="ended-healthy"),
])
async def test_in_service_everywhere(pool: asyncpg.Pool, rows: TaskRows, uid: str, checks: list, state: str,
                                     healthy: bool | None, serving: bool) -> None:
    app = f"hs-{uid}"
    await rows.app(app, {"http": 8080})
    await pool.execute("UPDATE app_versions SET spec = spec || jsonb_build_object('health_checks', $2::jsonb) "
                       "WHERE app = $1", app, json.dumps(checks))
    await rows.instance(app, f"{app}-1", "198.18.100.7", state=state)
    await pool.execute("UPDATE instances SET healthy = $2 WHERE id = $1", f"{app}-1", healthy)
    async with pool.acquire() as conn:
        announced = [r["id"] for r in await endpoints.in_service(conn, [app])]
        targets = [r["id"] for r in await conn.fetch(Queries("gateway").prometheus_targets) if r["app"] == app]
        placer = [r["in_service"] for r in await conn.fetch(Queries("placer").live_instances_of, [app])]
    assert announced == targets == ([f"{app}-1"] if serving else [])
    if state == "RUNNING":
        assert placer == [serving]
