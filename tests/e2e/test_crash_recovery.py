"""SIGKILL the placer or the registry in the middle of a deployment: after a restart, no
placement and no IP report is lost or applied twice."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import containers, instances, running_count, web_spec
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

N = 12


async def _events(pool, app_id: str, state: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT e.instance, count(*) AS n FROM instance_events e "
                            "JOIN instances i ON i.id = e.instance WHERE i.app = $1 AND e.state = $2 "
                            "GROUP BY e.instance", app_id, state)
    return {r["instance"]: r["n"] for r in rows}


async def _converged(c, app_id: str):
    """N running and nothing else on its way.  An instance may have FAILED on the way (a DHCP
    conflict under load) and been replaced: that is healing, not a duplicate."""
    insts = await instances(c, app_id)
    live = [i for i in insts if i["state"] not in ("FAILED", "KILLED", "LOST")]
    return live if running_count(live, N) and len(live) == N else None


async def _cleanup(platform, c, app_id: str):
    await c.delete(f"/v1/apps/{app_id}")
    await eventually(lambda: not containers(platform.cfg.cluster, app_id), timeout=90, what="containers removed")


async def test_placer_sigkill_mid_deploy(platform, pool, uid):
    apps = [f"pk{k}-{uid}" for k in range(3)]
    async with platform.client() as c:
        try:
            for a in apps:
                assert (await c.post("/v1/apps", json=web_spec(a, instances=N))).status_code == 201
            # Kill as soon as the first placement is in the task log: the rest is in flight.
            await eventually(lambda: pool.fetchval("SELECT count(*) FROM instances WHERE app = ANY($1)", apps),
                             timeout=30, interval=0.005, what="first placement")
            platform.kill("placer")
            platform.start("placer")
            for a in apps:
                insts = await eventually(lambda a=a: _converged(c, a), timeout=120, what=f"{a} converged")
                assert len({i["id"] for i in insts}) == N
                # Each instance was placed once (one PENDING event); N containers run.
                assert set((await _events(pool, a, "PENDING")).values()) == {1}
                assert len(containers(platform.cfg.cluster, a, all_states=False)) == N
        finally:
            for a in apps:
                await _cleanup(platform, c, a)


async def test_registry_sigkill_mid_deploy(platform, pool, uid):
    app_id = f"rk-{uid}"
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=web_spec(app_id, instances=N))).status_code == 201
            await eventually(lambda: pool.fetchval(
                "SELECT count(*) FROM instances WHERE app = $1 AND state <> 'PENDING'", app_id),
                timeout=60, interval=0.005, what="first report recorded")
            platform.kill("registry")
            platform.start("registry")
            await eventually(lambda: _converged(c, app_id), timeout=120, what="converged")
            # Every instance went to RUNNING exactly once, whatever was redelivered.
            assert set((await _events(pool, app_id, "RUNNING")).values()) == {1}
            assert len(containers(platform.cfg.cluster, app_id, all_states=False)) == N
        finally:
            await _cleanup(platform, c, app_id)
