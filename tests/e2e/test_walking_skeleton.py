"""Steps 2-3 of the walking skeleton, through all five services running as processes."""
from __future__ import annotations

import ipaddress
import urllib.request

import pytest

from libs import messages, subjects
from tests.e2e.helpers import containers, instances, running_count, web_spec
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


def fetch(ip: str, port: int = 8080) -> str:
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


async def last_endpoints(nc, app_id: str) -> messages.EndpointsChanged | None:
    try:
        msg = await nc.jetstream().get_last_msg(subjects.ENDPOINTS.name, subjects.endpoints(app_id))
    except Exception:  # noqa: BLE001 - not there yet
        return None
    return messages.decode(msg.data, messages.EndpointsChanged)


async def test_deploy_serve_and_delete(platform, nc, uid):
    app_id = f"web-{uid}"
    cluster = platform.cfg.cluster
    async with platform.client() as c:
        r = await c.post("/v1/apps", json=web_spec(app_id))
        assert r.status_code == 201, r.text

        insts = await eventually(lambda: _running(c, app_id, 3), timeout=60, what="3 RUNNING instances")
        for i in insts:
            assert i["app"] == app_id and i["version"] == 1
            assert i["host"] in platform.cfg.hosts
            # A host-like address from the cluster's container range (macvlan + DHCP), not Docker's bridge.
            assert i["container_id"] and ipaddress.ip_address(i["ip"]) in platform.cfg.net.subnet
            assert i["mac"] and i["parent"] == platform.cfg.net.nic(i["host"]) and i["lease_expires"]
            assert i["reason"] == ""
        assert len(containers(cluster, app_id)) == 3
        # hostd renews at T1 (3 s in the test cluster) and the registry records the later expiry.
        first = {i["id"]: i["lease_expires"] for i in insts}

        async def renewed():
            now = {i["id"]: i["lease_expires"] for i in await instances(c, app_id)}
            return all(now[k] and now[k] > v for k, v in first.items())
        await eventually(renewed, timeout=20, what="renewed leases in the task log")
        # The reported IP is real: each instance serves the page there.
        for i in insts:
            assert "noops" in await eventually(lambda ip=i["ip"]: fetch(ip), timeout=20, what=f"httpd on {i['ip']}")

        # The registry announced the in-service set to other systems.
        async def announced(n):
            ev = await last_endpoints(nc, app_id)
            return ev if ev is not None and len(ev.endpoints) == n else None

        ev = await eventually(lambda: announced(3), timeout=20, what="EndpointsChanged with 3 endpoints")
        assert sorted(e.ip for e in ev.endpoints) == sorted(i["ip"] for i in insts)
        assert all(e.ports == {"http": 8080} for e in ev.endpoints)

        listed = (await c.get("/v1/apps")).json()
        assert app_id in [a["id"] for a in listed]

        r = await c.delete(f"/v1/apps/{app_id}")
        assert r.status_code == 202, r.text
        await eventually(lambda: _all_state(c, app_id, "KILLED", 3), timeout=60, what="instances KILLED")
        assert app_id not in [a["id"] for a in (await c.get("/v1/apps")).json()]
        assert (await c.get(f"/v1/apps/{app_id}")).status_code == 404
        await eventually(lambda: not containers(cluster, app_id), timeout=30, what="containers removed")
        await eventually(lambda: announced(0), timeout=20, what="EndpointsChanged with no endpoints")


async def test_hostd_restart_adopts_instead_of_duplicating(platform, uid):
    app_id = f"adopt-{uid}"
    cluster = platform.cfg.cluster
    async with platform.client() as c:
        assert (await c.post("/v1/apps", json=web_spec(app_id, instances=4))).status_code == 201
        before = await eventually(lambda: _running(c, app_id, 4), timeout=60, what="4 RUNNING")
        ids_before = sorted(containers(cluster, app_id))
        platform.kill("hostd-h1")
        platform.start("hostd-h1")
        # Restarted hostd re-announces what it runs; nothing new is created.
        after = await eventually(lambda: _running(c, app_id, 4), timeout=30, what="still 4 RUNNING")
        assert sorted(i["container_id"] for i in after) == sorted(i["container_id"] for i in before)
        assert sorted(containers(cluster, app_id)) == ids_before
        await c.delete(f"/v1/apps/{app_id}")
        await eventually(lambda: not containers(cluster, app_id), timeout=60, what="containers removed")


async def test_failed_instance_is_replaced_with_reason(platform, uid):
    app_id = f"crash-{uid}"
    cluster = platform.cfg.cluster
    async with platform.client() as c:
        spec = web_spec(app_id, instances=1, cmd=["sh", "-c", "exit 3"])
        assert (await c.post("/v1/apps", json=spec)).status_code == 201

        async def failed():
            return [i for i in await instances(c, app_id) if i["state"] == "FAILED"]

        got = await eventually(failed, timeout=60, what="a FAILED instance")
        assert got[0]["reason"] == "exited with code 3"
        # The placer places a replacement (crash-loop backoff comes with the placer issue).
        await eventually(lambda: _count(c, app_id, 2), timeout=60, what="a replacement")
        await c.delete(f"/v1/apps/{app_id}")
        await eventually(lambda: not containers(cluster, app_id, all_states=False), timeout=60, what="stopped")


async def _running(c, app_id: str, n: int):
    insts = await instances(c, app_id)
    live = [i for i in insts if i["state"] == "RUNNING"]
    return live if running_count(insts, n) else None


async def _all_state(c, app_id: str, state: str, n: int) -> bool:
    insts = await instances(c, app_id)
    return len(insts) == n and all(i["state"] == state for i in insts)


async def _count(c, app_id: str, n: int) -> bool:
    return len(await instances(c, app_id)) >= n


async def test_platform_down_and_up_brings_apps_back(platform, uid):
    """`make down` removes the containers but keeps the task log; after `make up` the reconciler
    finds the containers gone, marks those instances LOST and the placer starts new ones."""
    from devtools import infra

    app_id = f"back-{uid}"
    cluster = platform.cfg.cluster
    async with platform.client() as c:
        assert (await c.post("/v1/apps", json=web_spec(app_id, instances=2))).status_code == 201
        before = {i["id"] for i in await eventually(lambda: _running(c, app_id, 2), timeout=60, what="running")}
    platform.stop_all()
    infra.remove_cluster_containers(cluster)
    platform.start_all()
    async with platform.client() as c:
        try:
            async def replaced():
                fresh = [i for i in await instances(c, app_id) if i["state"] == "RUNNING" and i["id"] not in before]
                return len(fresh) == 2

            await eventually(replaced, timeout=90, what="two new instances running")
            old = [i for i in await instances(c, app_id) if i["id"] in before]
            assert all(i["state"] == "LOST" and "reconciler" in i["reason"] for i in old), old
        finally:
            await c.delete(f"/v1/apps/{app_id}")
            await eventually(lambda: not containers(cluster, app_id), timeout=60, what="containers removed")
