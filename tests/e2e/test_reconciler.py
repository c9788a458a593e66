"""The reconciler repairs drift caused for real behind the platform's back: a managed container
removed with `docker rm -f`, containers started by hand with noops labels (one with no task, one
recreating a stopped instance as a stale start would), a server added to HAProxy by hand, an
nftables element deleted by hand, the registry SIGKILLed with the sinks disagreeing.  Each
converges within a few rounds (interval 1 s, grace 2 s here) and nothing that should run is lost."""
from __future__ import annotations

import subprocess
import uuid

import pytest

from devtools import simnet
from devtools import sinks as sink_procs
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.haproxy import runtime, runtime_batch
from tests.e2e.helpers import containers, instances, web_spec
from tests.e2e.test_fanout import haproxy_servers, lb_port, nft_members
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

CONVERGE_S = 30   # interval 1 s + grace 2 s + a sweep's stop (5 s) + the placer's replacement, with room


@pytest.fixture
async def client(platform):
    async with platform.client() as c:
        yield c


async def running(c, app_id: str, n: int) -> dict[str, dict] | None:
    got = {i["id"]: i for i in await instances(c, app_id) if i["state"] == "RUNNING"}
    return got if len(got) == n else None


async def start(platform, c, app_id: str, n: int, *, spec: dict | None = None) -> tuple[int, dict[str, dict]]:
    r = await c.post("/v1/apps", json=spec or web_spec(app_id, n))
    assert r.status_code == 201, r.text
    port = await lb_port(c, app_id)
    live = await eventually(lambda: running(c, app_id, n), timeout=60, what=f"{n} RUNNING")
    await eventually(lambda: in_every_sink(platform, c, app_id, port, live), timeout=30, what="in every sink")
    return port, live


async def in_every_sink(platform, c, app_id: str, port: int, live: dict[str, dict] | None = None) -> bool:
    live = live if live is not None else await running(c, app_id, len(await _running_ids(c, app_id)))
    if live is None:
        return False
    return (await haproxy_servers(platform, port) == set(live)
            and nft_members(platform, app_id) == {i["ip"] for i in live.values()})


async def _running_ids(c, app_id: str) -> set[str]:
    return {i["id"] for i in await instances(c, app_id) if i["state"] == "RUNNING"}


async def remove(platform, c, app_id: str) -> None:
    await c.delete(f"/v1/apps/{app_id}")
    await eventually(lambda: not containers(platform.cfg.cluster, app_id), timeout=90, what=f"{app_id} removed")


def run_by_hand(cluster: str, host: str, app_id: str, instance: str, epoch: int = 1) -> str:
    """A container with noops' labels that no placement made (the base image, an idle command)."""
    labels = {"noops.cluster": cluster, "noops.host": host, "noops.instance": instance, "noops.app": app_id,
              "noops.version": "1", "noops.epoch": str(epoch)}
    argv = ["docker", "run", "-d", "--network", "none", "--name", f"byhand-{uuid.uuid4().hex[:10]}"]
    for k, v in labels.items():
        argv += ["--label", f"{k}={v}"]
    out = subprocess.run([*argv, "noops/base:latest", "sleep", "600"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def exists(container_id: str) -> bool:
    return bool(subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"id={container_id}"],
                               capture_output=True, text=True, check=True).stdout.strip())


def force_remove(container_id: str) -> None:
    subprocess.run(["docker", "rm", "-f", container_id], capture_output=True)


async def test_a_container_removed_behind_the_platforms_back_is_replaced_and_its_leftovers_swept(
        platform, client, pool, uid):
    """`docker rm -f` of a container with a volume and a DHCP lease: hostd (if it sees the death in
    time: FAILED) or the reconciler (container gone: LOST) ends the instance, the placer replaces
    it, and the volume and lease nobody removed are swept."""
    c, app_id = client, f"rmf-{uid}"
    spec = web_spec(app_id, 2)
    spec["resources"] = {**spec["resources"], "disk_mb": 16}
    port, live = await start(platform, c, app_id, 2, spec=spec)
    try:
        victim, keeper = sorted(live)
        v = live[victim]
        image = platform.cfg.volume_dir / f"{platform.cfg.cluster}-{v['host']}" / f"{victim}.img"
        assert image.exists()
        subprocess.run(["docker", "rm", "-f", v["container_id"]], check=True, capture_output=True)

        async def replaced():
            now = await running(c, app_id, 2)
            return now if now and victim not in now and keeper in now else None
        now = await eventually(replaced, timeout=CONVERGE_S + 30, what="a replacement RUNNING")
        row = await pool.fetchrow("SELECT state, reason FROM instances WHERE id = $1", victim)
        assert row["state"] in ("FAILED", "LOST"), dict(row)
        assert now[keeper]["container_id"] == live[keeper]["container_id"], "the other one was not touched"
        await eventually(lambda: not image.exists(), timeout=CONVERGE_S, what="the victim's volume swept")

        def lease_gone() -> bool:   # released (or handed again, to a running instance)
            held = {x["ip"] for x in simnet.leases(platform.cfg.net)}
            return v["ip"] not in held or v["ip"] in {i["ip"] for i in now.values()}
        await eventually(lease_gone, timeout=CONVERGE_S, what="the victim's lease released")
        await eventually(lambda: in_every_sink(platform, c, app_id, port, now), timeout=30, what="sinks follow")
    finally:
        await remove(platform, c, app_id)


async def test_containers_started_by_hand_with_noops_labels_are_removed(platform, client, uid):
    """One with no task at all; one recreating an instance that was stopped (a stale start)."""
    c, app_id = client, f"hand-{uid}"
    cluster = platform.cfg.cluster
    port, live = await start(platform, c, app_id, 2)
    made: list[str] = []
    try:
        assert (await c.patch(f"/v1/apps/{app_id}", json={"instances": 1})).status_code in (200, 202)
        one = await eventually(lambda: running(c, app_id, 1), timeout=60, what="scaled to 1")
        (stopped,) = set(live) - set(one)
        await eventually(lambda: not [x for x in containers(cluster, app_id, all_states=True)
                                      if x == live[stopped]["container_id"]], timeout=30, what="stopped one removed")
        host_of_stopped = live[stopped]["host"]
        made = [run_by_hand(cluster, "h1", f"ghost-{uid}", f"ghost-{uid}-{uuid.uuid4().hex[:12]}"),
                run_by_hand(cluster, host_of_stopped, app_id, stopped, epoch=live[stopped]["epoch"])]
        await eventually(lambda: not any(exists(x) for x in made), timeout=CONVERGE_S, what="both removed")
        log = platform.log_text("reconciler")
        assert "sweep container: removed" in log, log[-2000:]
        still = await running(c, app_id, 1)
        assert still is not None and {k: v["container_id"] for k, v in still.items()} == \
            {k: v["container_id"] for k, v in one.items()}, "the live instance was not touched"
        await eventually(lambda: in_every_sink(platform, c, app_id, port, still), timeout=30, what="sinks agree")
    finally:
        for x in made:
            force_remove(x)
        await remove(platform, c, app_id)


async def test_sink_entries_changed_by_hand_are_repaired(platform, client, uid):
    """A server added to the app's HAProxy backend and an element deleted from its nftables set."""
    c, app_id = client, f"sinks-{uid}"
    port, live = await start(platform, c, app_id, 2)
    paths = sink_procs.haproxy_paths(platform.cfg.run_dir)
    intruder = hc.server_ref(port, "intruder")
    try:
        answers = await runtime_batch(paths.admin_socket, [f"add server {intruder} 198.18.255.254:80",
                                                           f"enable server {intruder}"])
        assert all(not a.strip() or "New server registered" in a for a in answers), answers
        gone = sorted(i["ip"] for i in live.values())[0]
        subprocess.run(["nft", "delete", "element", "inet", platform.cfg.nft_table, f"app_{app_id}", f"{{ {gone} }}"],
                       check=True)
        assert "intruder" in await haproxy_servers(platform, port) and gone not in nft_members(platform, app_id)
        await eventually(lambda: in_every_sink(platform, c, app_id, port, live), timeout=CONVERGE_S,
                         what="HAProxy and nftables repaired")
        assert await running(c, app_id, 2) == live, "nothing restarted"
    finally:
        await runtime(paths.admin_socket, f"set server {intruder} state maint")
        await runtime(paths.admin_socket, f"del server {intruder}")
        await remove(platform, c, app_id)


async def test_registry_killed_with_the_sinks_disagreeing_converges(platform, client, uid):
    """SIGKILL the registry, change both sinks behind its back (as a crash between two sink writes
    leaves them) and scale the app meanwhile: once it is back, every sink holds the task log's set."""
    c, app_id = client, f"regk-{uid}"
    port, live = await start(platform, c, app_id, 2)
    paths = sink_procs.haproxy_paths(platform.cfg.run_dir)
    stray = hc.server_ref(port, "stray")
    try:
        platform.kill("registry")
        try:
            await runtime_batch(paths.admin_socket, [f"add server {stray} 198.18.255.253:80", f"enable server {stray}"])
            gone = sorted(i["ip"] for i in live.values())[0]
            subprocess.run(["nft", "delete", "element", "inet", platform.cfg.nft_table, f"app_{app_id}",
                            f"{{ {gone} }}"], check=True)
            assert (await c.patch(f"/v1/apps/{app_id}", json={"instances": 3})).status_code in (200, 202)
        finally:
            platform.start("registry")
        now = await eventually(lambda: running(c, app_id, 3), timeout=60, what="3 RUNNING")
        assert set(live) <= set(now), "nothing that ran was lost"
        await eventually(lambda: in_every_sink(platform, c, app_id, port, now), timeout=CONVERGE_S, what="sinks agree")
    finally:
        await runtime(paths.admin_socket, f"set server {stray} state maint")
        await runtime(paths.admin_socket, f"del server {stray}")
        await remove(platform, c, app_id)


async def test_drift_shows_the_last_round_to_viewers_and_hides_hosts_from_scoped_tokens(platform, client, pool, uid):
    """A host UP in the task log that never heartbeats is a finding that stays (reported only)."""
    c, ghost = client, f"gh-{uid}"
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen, state, cordoned) "
                       "VALUES ($1, 1, 1, now() - interval '1 hour', 'UP', true)", ghost)
    try:
        async def found():
            last = (await c.get("/v1/drift")).json()["last"]
            hits = [f for f in (last or {}).get("findings", []) if f["kind"] == "host_silent" and f["where"] == ghost]
            return (last, hits[0]) if hits else None
        last, hit = await eventually(found, timeout=CONVERGE_S, what="host_silent in /v1/drift")
        assert hit["action"] == "report" and last["counts"]["host_silent"] >= 1 and last["leader"]["fence"] >= 1
        assert last["counts"]["hosts_asked"] >= 2 and not last["dry_run"]
        hist = (await c.get("/v1/drift", params={"history": 2})).json()["history"]
        assert len(hist) == 2 and all("findings" not in h for h in hist)
        scoped = (await c.post("/v1/tokens", json={"name": f"v-{uid}", "role": "viewer", "apps": f"{uid}-*"})).json()
        async with platform.client() as v:
            v.headers["Authorization"] = f"Bearer {scoped['token']}"
            seen = (await v.get("/v1/drift")).json()["last"]
            assert all(f.get("app", "").startswith(f"{uid}-") for f in seen["findings"]), seen["findings"][:5]
            assert (await v.post("/v1/drift")).status_code == 403
        r = await c.post("/v1/drift")
        assert r.status_code == 202, r.text

        async def ran_on_demand() -> bool:
            d = (await c.get("/v1/drift", params={"history": 5})).json()
            return any(x["trigger"].startswith("on demand") for x in [d["last"], *d["history"]])
        await eventually(ran_on_demand, timeout=CONVERGE_S, what="a round on demand")
    finally:
        await pool.execute("DELETE FROM hosts WHERE id = $1", ghost)
        await c.delete(f"/v1/tokens/v-{uid}")

