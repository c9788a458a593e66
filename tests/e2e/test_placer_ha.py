"""Two placers: one leads, the other takes over within 5 s of the leader's SIGKILL; a deposed
leader's plans cannot commit (fencing token)."""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

import pytest

from devtools import infra
from libs import db
from services.placer.commit import Committer, Deposed
from tests.e2e.helpers import containers, instances, web_spec
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


def role(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return json.loads(r.read()).get("role")
    except OSError:
        return None


async def test_standby_takes_over_within_5s(platform, uid):
    cfg = platform.cfg
    port = infra.free_port()
    env = {**os.environ, **cfg.env("placer"), "NOOPS_PLACER_PORT": str(port)}
    pidfile = cfg.run_dir / "placer-standby.pid"
    infra.spawn([sys.executable, "-m", "services.placer"], pidfile=pidfile,
                logfile=cfg.run_dir / "logs" / "placer-standby.log", env=env, cwd=infra.REPO)
    app_id = f"ha-{uid}"
    try:
        await eventually(lambda: role(port) == "standby", timeout=30, what="second placer on standby")
        assert role(cfg.placer_port) == "leader"
        platform.kill("placer")
        t0 = time.monotonic()
        await eventually(lambda: role(port) == "leader", timeout=10, interval=0.05, what="standby leads")
        assert time.monotonic() - t0 < 5.0
        async with platform.client() as c:
            assert (await c.post("/v1/apps", json=web_spec(app_id, instances=2))).status_code == 201
            await eventually(lambda: _running(c, app_id, 2), timeout=60, what="the new leader places")
            await c.delete(f"/v1/apps/{app_id}")
            await eventually(lambda: not containers(cfg.cluster, app_id), timeout=60, what="removed")
    finally:
        infra.stop_pidfile(pidfile)
        platform.start("placer")
        await eventually(lambda: role(cfg.placer_port) == "leader", timeout=30, what="placer leads again")


async def _running(c, app_id: str, n: int) -> bool:
    return len([i for i in await instances(c, app_id) if i["state"] == "RUNNING"]) == n


async def test_deposed_leader_cannot_commit(pool, uid):
    q = db.Queries("placer")
    old = await pool.fetchval(q.fence_take, "old-leader")
    newer = await pool.fetchval(q.fence_take, "new-leader")
    assert newer == old + 1
    committer = Committer(pool, q, heartbeat_grace_s=3.0)
    committer.token = old
    with pytest.raises(Deposed, match=f"fencing token is {newer}"):
        await committer.reconcile([f"any-{uid}"])
