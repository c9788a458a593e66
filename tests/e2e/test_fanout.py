"""Fan-out end to end: the platform's registry keeps the real HAProxy, the nftables table and the
Prometheus discovery endpoint equal to the in-service set -- through a killed instance, a
SIGKILLed registry in the middle of a deploy, and a HAProxy that is down meanwhile."""
from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from devtools import infra
from devtools import sinks as sink_procs
from libs import messages, subjects
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.haproxy import runtime
from tests.e2e.helpers import containers, instances, web_spec
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

# Each container serves its own hostname at /id, so a test sees which instance answered.
ID_CMD = ["sh", "-c", "hostname > /www/id && exec httpd -f -p 8080 -h /www"]


def spec(app_id: str, n: int) -> dict:
    return web_spec(app_id, instances=n, cmd=ID_CMD)


async def lb_port(c, app_id: str) -> int:
    async def addr():
        r = await c.get(f"/v1/apps/{app_id}")
        return r.json().get("lb", {}).get("http")
    return int((await eventually(addr, timeout=30, what="lb address in the app JSON")).rsplit(":", 1)[1])


async def haproxy_servers(platform, port: int) -> set[str]:
    paths = sink_procs.haproxy_paths(platform.cfg.run_dir)
    try:
        state = hc.parse_servers_state(await runtime(paths.admin_socket, "show servers state"))
    except Exception:
        return set()
    return {name for name, s in state.get(port, {}).items() if s.enabled}


def nft_members(platform, app_id: str) -> set[str]:
    out = subprocess.run(["nft", "-j", "list", "set", "inet", platform.cfg.nft_table, f"app_{app_id}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return set()
    for item in json.loads(out.stdout)["nftables"]:
        if "set" in item:
            return {e for e in item["set"].get("elem", []) if isinstance(e, str)}
    return set()


async def sd_instances(c, app_id: str) -> set[str]:
    groups = (await c.get("/v1/discovery/prometheus")).json()
    return {g["labels"]["instance"] for g in groups if g["labels"]["app"] == app_id}


async def running(c, app_id: str) -> dict[str, dict]:
    return {i["id"]: i for i in await instances(c, app_id) if i["state"] == "RUNNING"}


async def fetch_id(port: int) -> tuple[int, str]:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /id HTTP/1.0\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return 0, type(exc).__name__
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split()
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body.decode().strip()


def who(answer: str, insts: dict[str, dict]) -> str | None:
    """The instance whose container has this hostname (Docker: the container id's first 12 chars)."""
    for iid, i in insts.items():
        if answer and (i["container_id"].startswith(answer) or iid == answer):
            return iid
    return None


async def converged(platform, c, app_id: str, port: int, n: int | None = None) -> bool:
    live = await running(c, app_id)
    if n is not None and len(live) != n:
        return False
    ips = {i["ip"] for i in live.values()}
    return (await haproxy_servers(platform, port) == set(live)
            and nft_members(platform, app_id) == ips
            and await sd_instances(c, app_id) == set(live))


async def _cleanup(platform, c, app_id: str) -> None:
    await c.delete(f"/v1/apps/{app_id}")
    await eventually(lambda: not containers(platform.cfg.cluster, app_id, all_states=False), timeout=90,
                     what="containers stopped")
    # A container this test killed with `docker kill` is left exited (its instance is FAILED, so
    # nothing stops it again): the test removes what it broke.
    left = containers(platform.cfg.cluster, app_id)
    if left:
        subprocess.run(["docker", "rm", "-f", *left], capture_output=True)


async def test_lb_whitelist_and_discovery_follow_the_instances(platform, nc, uid):
    app_id = f"fo-{uid}"
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=spec(app_id, 3))).status_code == 201
            port = await lb_port(c, app_id)
            await eventually(lambda: converged(platform, c, app_id, port, 3), timeout=90, what="sinks hold 3 instances")
            live = await running(c, app_id)
            # The registry reads its sinks back for the reconciler (noops.sinks.observe).
            reply = await nc.request(subjects.SINKS_OBSERVE, b"", timeout=5)
            views = {v.sink: v for v in messages.decode(reply.data, messages.SinksObserved).sinks}
            assert sorted(s.split()[0] for s in views["haproxy"].groups[str(port)]) == sorted(live)
            assert views["nft"].groups[app_id] == sorted(i["ip"] for i in live.values())
            # Round robin over the three containers (a server just added may miss the first rounds).
            answered: set = set()

            async def all_answered() -> bool:
                status, body = await fetch_id(port)
                if status == 200:
                    answered.add(who(body, live))
                return answered == set(live)
            await eventually(all_answered, timeout=15, what="each container answering through HAProxy")

            victim = sorted(live)[0]
            subprocess.run(["docker", "kill", live[victim]["container_id"]], capture_output=True, check=True)
            # The registry processed the kill: the instance left the task log's in-service set...
            await eventually(lambda: _not_running(c, app_id, victim), timeout=30, what="kill recorded")
            # ...and every sink dropped it.
            await eventually(lambda: _sinks_without(platform, c, app_id, port, victim, live[victim]["ip"]),
                             timeout=15, what="sinks dropped the killed instance")
            results = [await fetch_id(port) for _ in range(20)]
            now_live = await running(c, app_id)
            assert all(status == 200 for status, _ in results), results
            assert victim not in {who(body, {**live, **now_live}) for _, body in results}
        finally:
            await _cleanup(platform, c, app_id)
        await eventually(lambda: converged(platform, c, app_id, port, 0), timeout=30, what="sinks emptied")


async def _not_running(c, app_id: str, iid: str) -> bool:
    return iid not in await running(c, app_id)


async def _sinks_without(platform, c, app_id: str, port: int, iid: str, ip: str) -> bool:
    return (iid not in await haproxy_servers(platform, port) and ip not in nft_members(platform, app_id)
            and iid not in await sd_instances(c, app_id))


N = 30


async def test_registry_sigkill_and_haproxy_down_mid_deploy_converge(platform, pool, uid):
    app_id = f"fk-{uid}"
    run_dir = platform.cfg.run_dir
    async with platform.client() as c:
        try:
            assert (await c.post("/v1/apps", json=spec(app_id, N))).status_code == 201
            await eventually(lambda: pool.fetchval(
                "SELECT count(*) FROM instances WHERE app = $1 AND state = 'RUNNING'", app_id),
                timeout=90, interval=0.01, what="first instance running")
            platform.kill("registry")
            sink_procs.stop_haproxy(run_dir)       # the LB sink is down while the deploy goes on
            platform.start("registry")
            await eventually(lambda: _all_running(c, app_id), timeout=180, what=f"{N} running")
            sink_procs.start_haproxy(run_dir)      # back, with whatever its file said
            port = await lb_port(c, app_id)
            await eventually(lambda: converged(platform, c, app_id, port, N), timeout=60,
                             what="every sink holds exactly the in-service set")
            assert len(nft_members(platform, app_id)) == N
        finally:
            if infra.read_pid(run_dir / "haproxy.pid") is None:   # the session's other tests need it
                sink_procs.start_haproxy(run_dir)
            await _cleanup(platform, c, app_id)


async def _all_running(c, app_id: str) -> bool:
    return len(await running(c, app_id)) == N
