"""Faults stay small.  Each fault is caused for real -- NATS stopped, hostd SIGKILLed, a host's
link cut -- and what must hold meanwhile is checked throughout, not only at the end:
no healthy instance is restarted, replaced or taken out of the load balancer, whitelists or
monitoring, unless its host is really gone.  (The longer variants run in `make chaos`.)"""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest

from devtools import infra
from devtools import sinks as sink_procs
from devtools.cluster import process_names
from services.registry.sinks.haproxy import runtime
from tests.e2e.helpers import containers, instances, web_spec
from tests.e2e.test_fanout import haproxy_servers, lb_port, nft_members, sd_instances
from tests.support.wait import eventually, holds

pytestmark = pytest.mark.e2e

N = 4
STOP_TIMEOUT_S = 5   # hostd's default NOOPS_STOP_TIMEOUT_S
DB_OUTAGE_S = 8      # 30 s in `make chaos`


@dataclass(frozen=True)
class Seen:
    """What a healthy app looks like from outside noops' own records."""
    containers: frozenset[str]
    lb: frozenset[str]
    nft: frozenset[str]


async def look(platform, app_id: str, port: int) -> Seen:
    return Seen(frozenset(containers(platform.cfg.cluster, app_id, all_states=False)),
                frozenset(await haproxy_servers(platform, port)), frozenset(nft_members(platform, app_id)))


async def running(c, app_id: str, n: int, *, host: str | None = None) -> list[dict] | None:
    got = [i for i in await instances(c, app_id) if i["state"] == "RUNNING" and (host is None or i["host"] == host)]
    return got if len(got) == n else None


async def both_hosts_online(c) -> bool:
    return {h["id"] for h in (await c.get("/v1/hosts")).json() if h["state"] == "UP" and h["online"]} >= {"h1", "h2"}


async def start_app(platform, c, app_id: str, n: int = N) -> tuple[int, list[dict], Seen]:
    await eventually(lambda: both_hosts_online(c), timeout=30, what="h1 and h2 online")
    r = await c.post("/v1/apps", json=web_spec(app_id, n, placement="spread"))
    assert r.status_code == 201, r.text
    port = await lb_port(c, app_id)
    live = await eventually(lambda: running(c, app_id, n), timeout=60, what=f"{n} RUNNING")
    ids = {i["id"] for i in live}

    async def settled() -> Seen | None:
        seen = await look(platform, app_id, port)
        return seen if len(seen.containers) == n and seen.lb == ids and len(seen.nft) == n else None
    return port, live, await eventually(settled, timeout=30, what="every sink has the instances")


async def events(pool, app_id: str, state: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM instance_events e JOIN instances i ON i.id = e.instance "
                               "WHERE i.app = $1 AND e.state = $2", app_id, state)


async def no_host_down(pool) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM hosts WHERE state = 'DOWN'")


async def assert_nothing_restarted(platform, c, pool, app_id: str, live: list[dict], before: Seen) -> None:
    after = await eventually(lambda: running(c, app_id, len(live)), timeout=30, what="still all RUNNING")
    assert {i["id"]: i["container_id"] for i in after} == {i["id"]: i["container_id"] for i in live}
    assert frozenset(containers(platform.cfg.cluster, app_id, all_states=False)) == before.containers
    assert await events(pool, app_id, "LOST") == 0
    assert await events(pool, app_id, "PENDING") == len(live)   # placed once each, never again


@pytest.fixture
async def client(platform):
    async with platform.client() as c:
        yield c


async def remove(platform, c, *app_ids: str) -> None:
    for a in app_ids:
        await c.delete(f"/v1/apps/{a}")
    for a in app_ids:
        await eventually(lambda a=a: not containers(platform.cfg.cluster, a), timeout=90, what=f"{a} removed")


async def test_bus_outage_restarts_nothing_and_a_deploy_made_meanwhile_happens_after(platform, client, pool, uid):
    c, app_id, late = client, f"bus-{uid}", f"late-{uid}"
    try:
        port, live, before = await start_app(platform, c, app_id)
        platform.stop_nats()
        try:
            # The gateway takes the request (task log + outbox); the bus carries it once back.
            r = await c.post("/v1/apps", json=web_spec(late, 2))
            assert r.status_code == 201, r.text

            async def untouched() -> bool:
                return await look(platform, app_id, port) == before and await no_host_down(pool)
            await holds(untouched, seconds=5, what="containers, HAProxy and nftables unchanged, no host DOWN")
        finally:
            platform.start_nats()
        await eventually(lambda: running(c, late, 2), timeout=60, what="the deployment made during the outage")
        # Hosts speak again; the placer gave them NOOPS_HOST_LOST_AFTER_S from its reconnect.
        await holds(lambda: no_host_down(pool), seconds=3, what="no host DOWN after the outage")
        await assert_nothing_restarted(platform, c, pool, app_id, live, before)
        assert await look(platform, app_id, port) == before
        assert await sd_instances(c, app_id) == {i["id"] for i in live}
    finally:
        await remove(platform, c, app_id, late)


async def test_bus_back_without_its_store_restarts_nothing_and_works_again(platform, client, pool, uid):
    """A NATS node that comes back empty (a new node, a wiped disk): streams and consumers are
    declared again by the services themselves, and the cluster takes deployments again."""
    c, app_id, after = client, f"wipe-{uid}", f"wiped-{uid}"
    try:
        port, live, before = await start_app(platform, c, app_id)
        platform.stop_nats(wipe=True)
        try:
            async def untouched() -> bool:
                return await look(platform, app_id, port) == before
            await holds(untouched, seconds=3, what="containers and sinks unchanged")
        finally:
            platform.start_nats()
        r = await c.post("/v1/apps", json=web_spec(after, 2))
        assert r.status_code == 201, r.text
        await eventually(lambda: running(c, after, 2), timeout=90, what="a deployment on the new store")
        await holds(lambda: no_host_down(pool), seconds=3, what="no host DOWN after the outage")
        await assert_nothing_restarted(platform, c, pool, app_id, live, before)
    finally:
        await remove(platform, c, app_id, after)


async def test_hostd_sigkill_and_back_keeps_its_instances(platform, client, pool, uid):
    c, app_id = client, f"hk-{uid}"
    try:
        port, live, before = await start_app(platform, c, app_id)
        assert {i["host"] for i in live} == {"h1", "h2"}
        platform.kill("hostd-h1")
        try:
            # What an upgrade or a systemd restart looks like: back a few seconds later.
            await holds(lambda: no_host_down(pool), seconds=4, what="no host DOWN while hostd restarts")
        finally:
            platform.start("hostd-h1")
        await holds(lambda: no_host_down(pool), seconds=3, what="no host DOWN after hostd is back")
        await assert_nothing_restarted(platform, c, pool, app_id, live, before)
        assert await look(platform, app_id, port) == before
    finally:
        await remove(platform, c, app_id)


async def _servers_up(platform, port: int) -> dict[str, bool]:
    """HAProxy's own view of each server of the backend: passing its checks or not."""
    text = await runtime(sink_procs.haproxy_paths(platform.cfg.run_dir).admin_socket, "show servers state")
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) > 6 and f[0].isdigit() and f[1] == f"p{port}":
            out[f[3]] = f[5] == "2"   # srv_op_state 2: running
    return out


async def test_real_host_loss_moves_its_instances_and_stops_the_stale_copies(platform, client, pool, uid):
    c, app_id = client, f"loss-{uid}"
    cluster = platform.cfg.cluster
    cut = False
    try:
        port, live, before = await start_app(platform, c, app_id)
        on_h1 = {i["id"] for i in live if i["host"] == "h1"}
        assert on_h1 and len(on_h1) < N
        t0 = time.monotonic()
        platform.cut_host("h1")
        cut = True
        platform.kill("hostd-h1")

        async def lb_skips_h1() -> bool:
            up = await _servers_up(platform, port)
            return all(not up.get(i, False) for i in on_h1)
        await eventually(lb_skips_h1, timeout=10, interval=0.05, what="HAProxy stops sending to h1's instances")
        lb_s = time.monotonic() - t0
        assert lb_s < 3.0, f"HAProxy still sent to the lost host's instances {lb_s:.1f}s after the cut"

        async def replaced() -> bool:
            got = await running(c, app_id, N, host=None)
            ids = {i["id"] for i in got or []}
            return bool(got) and not ids & on_h1 and await haproxy_servers(platform, port) == ids
        await eventually(replaced, timeout=30, what="replacements RUNNING and in the load balancer")
        moved_s = time.monotonic() - t0
        assert moved_s < 15.0, f"replacements in service only {moved_s:.1f}s after the host was lost"
        hosts = {h["id"]: h for h in (await c.get("/v1/hosts")).json()}
        assert hosts["h1"]["state"] == "DOWN"

        # The host comes back: what the task log no longer assigns to it is stopped.
        stale = set(containers(cluster, app_id, all_states=False)) & _ids_on(cluster, "h1")
        assert stale, "the lost host's containers kept running through the cut"
        platform.mend_host("h1")
        cut = False
        platform.start("hostd-h1")

        async def h1_up() -> bool:
            return any(h["id"] == "h1" and h["state"] == "UP" for h in (await c.get("/v1/hosts")).json())
        await eventually(h1_up, timeout=30, interval=0.05, what="h1 UP again")
        t1 = time.monotonic()
        await eventually(lambda: not set(containers(cluster, app_id, all_states=False)) & stale, timeout=30,
                         interval=0.05, what="stale copies on h1 stopped")
        gone_s = time.monotonic() - t1
        # SIGTERM within 2 s of the first heartbeat, then the stop timeout (httpd ignores SIGTERM).
        assert gone_s < 2.0 + STOP_TIMEOUT_S + 1.0, f"stale copies gone only {gone_s:.1f}s after h1 was back"
    finally:
        if cut:
            platform.mend_host("h1")
        if not (platform.cfg.run_dir / "hostd-h1.pid").exists():
            platform.start("hostd-h1")
        await remove(platform, c, app_id)


def _ids_on(cluster: str, host: str) -> set[str]:
    import subprocess
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=noops.cluster={cluster}",
                          "--filter", f"label=noops.host={host}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


async def test_database_outage_kills_no_loop_marks_no_host_down_and_loses_nothing(platform, client, pool, uid):
    c, app_id, late = client, f"db-{uid}", f"dbl-{uid}"
    names = process_names(platform.cfg)
    try:
        port, live, before = await start_app(platform, c, app_id)
        pids = {n: infra.read_pid(platform.cfg.run_dir / f"{n}.pid") for n in names}
        platform.stop_postgres()
        try:
            async def refused_clearly() -> bool:
                r = await c.post("/v1/apps", json=web_spec(late, 2))
                return r.status_code == 503 and "task log unavailable" in r.json()["error"]
            await eventually(refused_clearly, timeout=10, what="503 for a write while the task log is down")

            async def untouched() -> bool:
                alive = all(infra.pid_alive(pid) for pid in pids.values() if pid)
                return alive and await look(platform, app_id, port) == before
            await holds(untouched, seconds=DB_OUTAGE_S, what="every service process alive, containers and sinks kept")
        finally:
            platform.start_postgres()
        # Back: writes are taken again and carried out; nothing was lost or marked DOWN.
        await eventually(lambda: _created(c, late), timeout=30, what="the gateway takes writes again")
        await eventually(lambda: _answers(pool), timeout=30, what="the test's own pool reconnected")
        await eventually(lambda: running(c, late, 2), timeout=60, what="a deployment after the outage")
        await holds(lambda: no_host_down(pool), seconds=3, what="no host DOWN after the outage")
        await assert_nothing_restarted(platform, c, pool, app_id, live, before)
        for n, pid in pids.items():
            assert infra.read_pid(platform.cfg.run_dir / f"{n}.pid") == pid, f"{n} was restarted"
        for n in names:
            health = httpx.get(f"http://127.0.0.1:{platform.cfg.ports()[n]}/healthz", timeout=5)
            assert health.status_code == 200, (n, health.text)
    finally:
        await remove(platform, c, app_id, late)


async def _created(c, app_id: str) -> bool:
    r = await c.post("/v1/apps", json=web_spec(app_id, 2))
    return r.status_code in (201, 409)


async def _answers(pool) -> bool:
    try:
        return await pool.fetchval("SELECT 1") == 1
    except Exception:   # a connection the restart ended: the pool replaces it
        return False
