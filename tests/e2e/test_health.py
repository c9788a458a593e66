"""Health checks end to end: hostd checks, the registry records transitions, the in-service set
(HAProxy, nftables, Prometheus discovery) follows `healthy`, and an instance past its failure
limit is killed by hostd and replaced by the placer."""
from __future__ import annotations

import subprocess

import pytest

from tests.e2e.helpers import containers, instances, web_spec
from tests.e2e.test_fanout import haproxy_servers, lb_port, nft_members, sd_instances
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

# /ok exists at start; a test removes it in one container to make that instance's check fail.
OK_CMD = ["sh", "-c", "echo ok > /www/ok && exec httpd -f -p 8080 -h /www"]


def check(path: str, limit: int) -> dict:
    return {"protocol": "http", "port_name": "http", "path": path, "grace_period_s": 0, "interval_s": 0.3,
            "timeout_s": 2, "max_consecutive_failures": limit}


async def by_id(c, app_id: str) -> dict[str, dict]:
    return {i["id"]: i for i in await instances(c, app_id)}


async def in_sinks(platform, c, app_id: str, port: int) -> tuple[set[str], set[str], set[str]]:
    """(HAProxy servers, nftables IPs, Prometheus targets) of the app."""
    return (await haproxy_servers(platform, port), nft_members(platform, app_id), await sd_instances(c, app_id))


async def _cleanup(platform, c, app_id: str) -> None:
    await c.delete(f"/v1/apps/{app_id}")
    await eventually(lambda: not containers(platform.cfg.cluster, app_id, all_states=False), timeout=90,
                     what="containers stopped")


async def test_in_service_set_follows_health(platform, pool, uid):
    app_id = f"hc-{uid}"
    async with platform.client() as c:
        try:
            r = await c.post("/v1/apps", json=web_spec(app_id, 2, cmd=OK_CMD, health_checks=[check("/ok", 0)]))
            assert r.status_code == 201, r.text
            port = await lb_port(c, app_id)

            async def healthy_in_sinks() -> dict[str, dict] | None:
                insts = await by_id(c, app_id)
                live = {k: i for k, i in insts.items() if i["state"] == "RUNNING" and i["healthy"] is True}
                ips = {i["ip"] for i in live.values()}
                if len(live) == 2 and await in_sinks(platform, c, app_id, port) == (set(live), ips, set(live)):
                    return live
                return None
            live = await eventually(healthy_in_sinks, timeout=90, what="2 healthy instances in every sink")
            assert all(i["health"] == "http /ok: status 200" for i in live.values())

            sick, well = sorted(live)
            subprocess.run(["docker", "exec", live[sick]["container_id"], "rm", "/www/ok"], check=True)

            async def dropped() -> bool:
                i = (await by_id(c, app_id))[sick]
                lb, nft, sd = await in_sinks(platform, c, app_id, port)
                return (i["state"] == "RUNNING" and i["healthy"] is False and i["health"] == "http /ok: status 404"
                        and lb == {well} and nft == {live[well]["ip"]} and sd == {well})
            await eventually(dropped, timeout=30, what="unhealthy instance out of every sink, still RUNNING")
            events = await pool.fetch("SELECT state, reason FROM instance_events WHERE instance = $1 ORDER BY id", sick)
            assert ("RUNNING", "unhealthy: http /ok: status 404") in [(e["state"], e["reason"]) for e in events]

            # Healthy again (max_consecutive_failures 0: never killed): back in service.
            subprocess.run(["docker", "exec", live[sick]["container_id"], "sh", "-c", "echo ok > /www/ok"], check=True)
            await eventually(healthy_in_sinks, timeout=30, what="recovered instance back in every sink")
        finally:
            await _cleanup(platform, c, app_id)


async def test_failing_check_gets_the_instance_replaced(platform, uid):
    app_id = f"hf-{uid}"
    async with platform.client() as c:
        try:
            r = await c.post("/v1/apps", json=web_spec(app_id, 1, health_checks=[check("/nope", 2)],
                                                       backoff_seconds=0.5))
            assert r.status_code == 201, r.text

            async def replaced() -> list[dict] | None:
                failed = [i for i in await instances(c, app_id) if i["state"] == "FAILED"]
                return failed if len(failed) >= 2 else None
            failed = await eventually(replaced, timeout=90, what="two instances killed by their check")
            for i in failed:
                assert i["reason"] == "health check http /nope failed 2 times: status 404", i
                assert i["healthy"] is False
            # Never in service: Prometheus discovery never listed it (checked now; the LB likewise
            # reads the same in-service query).
            assert await sd_instances(c, app_id) == set()
            app = (await c.get(f"/v1/apps/{app_id}")).json()
            assert app["backoff"]["delay_s"] > 0     # the placer's crash-loop backoff applies
        finally:
            await _cleanup(platform, c, app_id)


async def test_rolling_update_waits_for_healthy_new_instances(platform, uid):
    app_id = f"hr-{uid}"
    async with platform.client() as c:
        try:
            # No kill limit on version 1: a check timing out on a loaded machine must not replace a
            # v1 instance, whose id the end of the test looks for.
            good = web_spec(app_id, 2, health_checks=[check("/", 0)])
            assert (await c.post("/v1/apps", json=good)).status_code == 201

            async def healthy(version: int) -> list[dict] | None:
                got = [i for i in await instances(c, app_id)
                       if i["version"] == version and i["state"] == "RUNNING" and i["healthy"] is True]
                return got if len(got) == 2 else None
            v1 = {i["id"] for i in await eventually(lambda: healthy(1), timeout=60, what="v1 healthy")}

            # Version 2's check never passes (and never kills): its instances run but are not
            # healthy, so no v1 instance may be stopped; the deployment fails and rolls back.
            bad = web_spec(app_id, 2, health_checks=[check("/nope", 0)], upgrade_strategy={"progress_deadline_s": 5})
            assert (await c.put(f"/v1/apps/{app_id}", json=bad)).status_code == 200

            async def v2_unhealthy() -> bool:
                insts = await instances(c, app_id)
                return len([i for i in insts if i["version"] == 2 and i["healthy"] is False]) == 2
            await eventually(v2_unhealthy, timeout=60, what="v2 instances unhealthy")

            async def rolled_back() -> dict | None:
                deps = (await c.get(f"/v1/apps/{app_id}/deployments")).json()
                return next((d for d in deps if d["to_version"] == 2 and d["state"] == "failed"), None)
            failed = await eventually(rolled_back, timeout=60, what="deployment of v2 failed")
            assert "0 of 2 new instances in service" in failed["reason"], failed
            insts = await by_id(c, app_id)
            assert all(insts[i]["state"] == "RUNNING" and insts[i]["desired"] == "RUNNING" for i in v1), insts
            # Version 3 is version 1's spec: the v1 instances stay, the unhealthy v2 ones go.
            await eventually(lambda: _only(c, app_id, v1), timeout=60, what="v2 instances stopped")
        finally:
            await _cleanup(platform, c, app_id)


async def _only(c, app_id: str, ids: set[str]) -> bool:
    live = {i["id"] for i in await instances(c, app_id) if i["desired"] == "RUNNING" and
            i["state"] not in ("FAILED", "KILLED", "LOST")}
    return live == ids
