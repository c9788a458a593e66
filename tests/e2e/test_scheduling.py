"""Placer behaviour through the whole platform: waiting for room, host failure and return,
rolling updates, failed deployments with automatic rollback, backoff, drain, killing a given set."""
from __future__ import annotations

import pytest

from tests.e2e.helpers import containers, instances, web_spec
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


async def app_json(c, app_id: str) -> dict:
    r = await c.get(f"/v1/apps/{app_id}")
    r.raise_for_status()
    return r.json()


async def running(c, app_id: str, n: int, **match):
    live = [i for i in await instances(c, app_id) if i["state"] == "RUNNING"
            and all(i[k] == v for k, v in match.items())]
    return live if len(live) == n else None


async def remove(platform, c, *apps: str) -> None:
    for a in apps:
        await c.delete(f"/v1/apps/{a}")
    for a in apps:
        await eventually(lambda a=a: not containers(platform.cfg.cluster, a), timeout=90, what=f"{a} removed")


async def test_waits_for_room_with_a_reason_then_is_placed(platform, uid):
    big, small = f"big-{uid}", f"small-{uid}"
    # Memory, sized from the hosts: what other tests' instances hold (32 MiB each) cannot matter.
    mem = platform.cfg.host_mem_mb
    async with platform.client() as c:
        try:
            spec = web_spec(big, instances=2, placement="spread")
            spec["resources"]["mem_mb"] = int(mem * 0.75)
            assert (await c.post("/v1/apps", json=spec)).status_code == 201
            await eventually(lambda: running(c, big, 2), timeout=60, what="big app running")
            spec = web_spec(small, instances=1)
            spec["resources"]["mem_mb"] = int(mem * 0.5)
            assert (await c.post("/v1/apps", json=spec)).status_code == 201

            async def waiting():
                a = await app_json(c, small)
                return a if a["status"] == "waiting" else None

            a = await eventually(waiting, timeout=30, what="unschedulable with a reason")
            # Both of this platform's hosts lack the memory; hosts other tests of the session made
            # (a silent one the reconciler's test deletes again, DOWN in the placer's view until
            # its next snapshot) may add their own reasons after it.
            reason = a["status_reason"]
            assert reason.startswith(f"1 instance waiting for room (needs {int(mem * 0.5)} MiB memory: 2 hosts"), reason
            assert reason.endswith(")") and "memory" not in reason.split("memory: 2 hosts", 1)[1], reason
            # Capacity appears: the queued request is placed, never dropped.
            await c.delete(f"/v1/apps/{big}")
            await eventually(lambda: running(c, small, 1), timeout=60, what="placed once room appeared")
        finally:
            await remove(platform, c, big, small)


async def test_host_down_loses_instances_replaces_them_and_stops_stale_copies(platform, nc, uid):
    app_id = f"heal-{uid}"
    cluster = platform.cfg.cluster
    async with platform.client() as c:
        try:
            spec = web_spec(app_id, instances=2, placement="spread")
            assert (await c.post("/v1/apps", json=spec)).status_code == 201
            live = await eventually(lambda: running(c, app_id, 2), timeout=60, what="2 running")
            on_h1 = [i["id"] for i in live if i["host"] == "h1"]
            assert on_h1, "spread placement uses both hosts"
            platform.kill("hostd-h1")  # its containers keep running: they become stale copies

            async def lost():
                insts = {i["id"]: i for i in await instances(c, app_id)}
                return all(insts[i]["state"] == "LOST" for i in on_h1) and insts

            insts = await eventually(lost, timeout=30, what="instances on h1 LOST")
            assert all("h1 stopped answering" in insts[i]["reason"] for i in on_h1)
            await eventually(lambda: running(c, app_id, 2, host="h2"), timeout=60, what="replaced on h2")
            hosts = {h["id"]: h for h in (await c.get("/v1/hosts")).json()}
            assert hosts["h1"]["state"] == "DOWN"

            platform.start("hostd-h1")
            # Back: the task log no longer assigns those instances to h1, so their copies stop.
            await eventually(lambda: not [x for x in containers(cluster, app_id)
                                          if x in _ids_on(cluster, "h1")], timeout=60, what="stale copies stopped")
            await eventually(lambda: _host_up(c, "h1"), timeout=30, what="h1 UP again")
            assert len(await running(c, app_id, 2, host="h2")) == 2
        finally:
            await remove(platform, c, app_id)


def _ids_on(cluster: str, host: str) -> set[str]:
    import subprocess
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=noops.cluster={cluster}",
                          "--filter", f"label=noops.host={host}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


async def _host_up(c, host: str) -> bool:
    return any(h["id"] == host and h["state"] == "UP" and h["online"] for h in (await c.get("/v1/hosts")).json())


async def test_rolling_update_keeps_capacity(platform, uid):
    app_id = f"roll-{uid}"
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=web_spec(app_id, instances=3))).status_code == 201
            await eventually(lambda: running(c, app_id, 3), timeout=60, what="v1 running")
            await eventually(lambda: _deployed(c, app_id, 1), timeout=30, what="v1 deployment succeeded")
            r = await c.put(f"/v1/apps/{app_id}", json=web_spec(app_id, instances=3, env={"RELEASE": "2"}))
            assert r.status_code == 200 and r.json()["version"] == 2
            low = 3

            async def done():
                nonlocal low
                insts = await instances(c, app_id)
                run = [i for i in insts if i["state"] == "RUNNING"]
                low = min(low, len(run))
                a = await app_json(c, app_id)
                return (len(run) == 3 and all(i["version"] == 2 for i in run)
                        and a["deployment"]["state"] == "succeeded" and a)

            a = await eventually(done, timeout=90, interval=0.02, what="rolled to version 2")
            assert low >= 3, "minimum_health_capacity 1.0: never fewer than 3 running"
            assert a["last_good_version"] == 2
            deps = (await c.get(f"/v1/apps/{app_id}/deployments")).json()
            assert [(d["from_version"], d["to_version"], d["state"]) for d in deps][:2] == [
                (1, 2, "succeeded"), (None, 1, "succeeded")]
        finally:
            await remove(platform, c, app_id)


async def _deployed(c, app_id: str, version: int) -> bool:
    d = (await app_json(c, app_id))["deployment"]
    return d is not None and d["to_version"] == version and d["state"] == "succeeded"


async def _deploying(c, app_id: str, version: int) -> bool:
    d = (await app_json(c, app_id))["deployment"]
    return d is not None and d["to_version"] == version and d["state"] in ("running", "succeeded")


async def test_failed_deployment_rolls_back_and_backoff_shows(platform, uid):
    app_id = f"rb-{uid}"
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=web_spec(app_id, instances=2))).status_code == 201
            v1 = await eventually(lambda: running(c, app_id, 2), timeout=60, what="v1 running")
            await eventually(lambda: _deployed(c, app_id, 1), timeout=30, what="v1 deployment succeeded")
            bad = web_spec(app_id, instances=2, image="noops/missing:latest",
                           upgrade_strategy={"progress_deadline_s": 4})
            assert (await c.put(f"/v1/apps/{app_id}", json=bad)).status_code == 200

            async def backing_off():
                a = await app_json(c, app_id)
                return a if a["backoff"]["delay_s"] > 0 else None

            crashing = await eventually(backing_off, timeout=30, what="crash-loop backoff visible")
            # Marathon's lastTaskFailure: what the registry recorded when the new version's instance failed.
            last = crashing["last_failure"]
            assert last is not None and (last["state"], last["version"]) == ("FAILED", 2), last
            assert "noops/missing" in last["reason"] and last["host"] in ("h1", "h2"), last

            async def rolled_back():
                deps = (await c.get(f"/v1/apps/{app_id}/deployments")).json()
                failed = [d for d in deps if d["to_version"] == 2 and d["state"] == "failed"]
                return failed and failed[0]

            failed = await eventually(rolled_back, timeout=60, what="deployment failed")
            assert "no progress for 4s" in failed["reason"] and "rolling back to version 1" in failed["reason"]
            a = await app_json(c, app_id)
            assert a["version"] == 3 and a["spec"]["image"] == "noops/base:latest"
            # Version 3 runs what version 1 ran: the original instances simply stay.
            assert {i["id"] for i in await eventually(lambda: running(c, app_id, 2), timeout=30,
                                                      what="v1 instances")} == {i["id"] for i in v1}
            assert (await c.delete(f"/v1/apps/{app_id}/delay")).status_code == 200
            assert (await app_json(c, app_id))["backoff"]["delay_s"] == 0
        finally:
            await remove(platform, c, app_id)


async def test_drain_moves_instances_and_kill_a_given_set(platform, uid):
    app_id = f"drain-{uid}"
    async with platform.client() as c:
        try:
            spec = web_spec(app_id, instances=3, placement="spread")
            assert (await c.post("/v1/apps", json=spec)).status_code == 201
            await eventually(lambda: running(c, app_id, 3), timeout=60, what="3 running")
            r = await c.post("/v1/hosts/h1/drain")
            assert r.status_code == 200 and r.json()["draining"] is True
            moved = await eventually(lambda: running(c, app_id, 3, host="h2"), timeout=60, what="moved off h1")
            assert (await c.delete("/v1/hosts/h1/drain")).json()["draining"] is False

            victim = moved[0]["id"]
            r = await c.post(f"/v1/apps/{app_id}/kill", json={"instances": [victim]})
            assert r.status_code == 202, r.text
            await eventually(lambda: running(c, app_id, 2), timeout=60, what="2 left")
            a = await app_json(c, app_id)
            assert a["instances"] == 2
            states = {i["id"]: i["state"] for i in await instances(c, app_id)}
            await eventually(lambda: _state(c, app_id, victim, "KILLED"), timeout=30, what="victim KILLED")
            assert victim in states
            bad = await c.post(f"/v1/apps/{app_id}/kill", json={"instances": ["nope"]})
            assert bad.status_code == 422 and "nope" in bad.text
        finally:
            await c.delete("/v1/hosts/h1/drain")
            await remove(platform, c, app_id)


async def _state(c, app_id: str, iid: str, state: str) -> bool:
    return any(i["id"] == iid and i["state"] == state for i in await instances(c, app_id))


async def test_deployment_controls_restart_pause_resume_cancel_rollback(platform, uid):
    app_id = f"ctl-{uid}"
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=web_spec(app_id, instances=2))).status_code == 201
            first = {i["id"] for i in await eventually(lambda: running(c, app_id, 2), timeout=60, what="v1")}
            await eventually(lambda: _deployed(c, app_id, 1), timeout=30, what="v1 deployed")

            # Restart: a new version whose instances all replace the old ones.
            r = await c.post(f"/v1/apps/{app_id}/restart")
            assert r.status_code == 202 and r.json()["version"] == 2
            await eventually(lambda: _deployed(c, app_id, 2), timeout=60, what="restart deployed")
            # Old copies may still be stopping: count the new version's.
            second = {i["id"] for i in await eventually(lambda: running(c, app_id, 2, version=2), timeout=30,
                                                        what="v2 running")}
            assert not first & second

            # Pause a deployment: nothing moves until it resumes.
            bad = web_spec(app_id, instances=2, env={"STEP": "3"})
            assert (await c.put(f"/v1/apps/{app_id}", json=bad)).status_code == 200
            # The placer opens the deployment when it first looks at version 3.
            await eventually(lambda: _deploying(c, app_id, 3), timeout=30, what="v3 deployment open")
            r = await c.post(f"/v1/apps/{app_id}/deployment/pause")
            if r.status_code == 409:  # finished before we could pause it: nothing to pause then
                assert await _deployed(c, app_id, 3)
            else:
                assert r.status_code == 200, r.text
                paused = await app_json(c, app_id)
                assert paused["deployment"]["state"] == "paused"
                assert (await c.post(f"/v1/apps/{app_id}/deployment/resume")).status_code == 200
                await eventually(lambda: _deployed(c, app_id, 3), timeout=60, what="resumed and deployed")

            # Cancel with rollback returns to the version the deployment started from.
            assert (await c.put(f"/v1/apps/{app_id}", json=web_spec(app_id, instances=2,
                                                                      env={"STEP": "4"}))).status_code == 200
            r = await c.post(f"/v1/apps/{app_id}/deployment/cancel", json={"rollback": True})
            if r.status_code == 409:  # it may already have finished: nothing to cancel then
                assert "no deployment in progress" in r.text
            else:
                assert r.status_code == 200, r.text
                a = await app_json(c, app_id)
                assert a["version"] == 5 and a["spec"]["env"] == {"STEP": "3"}

            # Rollback to any earlier version; an unknown one is refused with the field named.
            r = await c.post(f"/v1/apps/{app_id}/rollback", json={"version": 1})
            assert r.status_code == 202
            v = r.json()["version"]
            await eventually(lambda: _deployed(c, app_id, v), timeout=60, what="rolled back to v1's spec")
            assert (await app_json(c, app_id))["spec"]["env"] == {}
            r = await c.post(f"/v1/apps/{app_id}/rollback", json={"version": 99})
            assert r.status_code == 422 and r.json()["details"][0]["field"] == "version"
            r = await c.post(f"/v1/apps/{app_id}/deployment/pause")
            assert r.status_code == 409
        finally:
            await remove(platform, c, app_id)
