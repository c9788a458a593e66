"""Whole reconciler rounds in this process against a real hostd (in-process, real Docker and
NATS) and the real task log: an orphan container started by hand is only reported in dry run and
swept otherwise, a RUNNING instance with no container is marked LOST, every round is recorded,
and a reconciler whose fencing token is stale writes nothing."""
from __future__ import annotations

import dataclasses

import pytest

from libs import db, outbox
from libs.settings import CommonSettings, HttpSettings, ReconcilerSettings
from services.hostd.containers import LABEL_CLUSTER, LABEL_HOST, LABEL_INSTANCE
from services.reconciler.act import Fenced
from services.reconciler.rounds import Reconciler
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    BASE_IMAGE, HostdUnderTest, docker, hostd)
from tests.support.wait import eventually


def settings(cluster_cfg, **over) -> ReconcilerSettings:
    common = dataclasses.replace(CommonSettings(), db_dsn=cluster_cfg.db_dsn)
    return ReconcilerSettings(common=common, http=HttpSettings(), **{
        "grace_s": 0.0, "interval_s": 0.2, "sinks_timeout_s": 0.5, "inventory_timeout_s": 5.0, **over})


async def hand_made(h: HostdUnderTest, instance: str, app: str) -> str:
    """A running container with this host's noops labels that no placement made."""
    c = await h.docker.containers.run(config={
        "Image": BASE_IMAGE, "Cmd": ["sleep", "600"], "HostConfig": {"NetworkMode": "none"},
        "Labels": {LABEL_CLUSTER: h.cfg.cluster, LABEL_HOST: h.host, LABEL_INSTANCE: instance,
                   "noops.app": app, "noops.epoch": "1"}})
    return c.id


async def exists(h: HostdUnderTest, container_id: str) -> bool:
    return any(c.id == container_id for c in await h.containers())


@pytest.fixture
async def host_row(pool, hostd: HostdUnderTest):
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 2, 2048, now()) "
                       "ON CONFLICT (id) DO UPDATE SET last_seen = now()", hostd.host)
    try:
        yield hostd.host
    finally:
        await pool.execute("DELETE FROM instance_events WHERE instance IN (SELECT id FROM instances WHERE host = $1)",
                           hostd.host)
        await pool.execute("DELETE FROM instances WHERE host = $1", hostd.host)
        await pool.execute("DELETE FROM hosts WHERE id = $1", hostd.host)


async def reconciler(cluster_cfg, pool, nc, **over) -> Reconciler:
    q = db.Queries("reconciler")
    fence = await pool.fetchval(q.fence_take, "test")
    return Reconciler(settings(cluster_cfg, **over), pool, q, nc, outbox.Relay(pool, nc.jetstream()),
                      holder="test", fence=fence)


def finding(rnd, kind: str, instance: str):
    return next((f for f in rnd.result.findings if f.kind == kind and f.instance == instance), None)


async def test_dry_run_reports_an_orphan_and_a_real_round_sweeps_it(cluster_cfg, pool, nc, hostd, host_row, uid):
    await hostd.start()
    ghost = f"ghost{uid}-000000000001"
    cid = await hand_made(hostd, ghost, f"ghost{uid}")
    dry = await reconciler(cluster_cfg, pool, nc, dry_run=True)
    await dry.one_round()
    rnd = await dry.one_round()
    f = finding(rnd, "orphan", ghost)
    assert f is not None and f.action == "dry-run" and f.where == hostd.host and f.key == cid
    assert await exists(hostd, cid), "a dry run removes nothing"
    row = await pool.fetchrow("SELECT dry_run, findings, counts FROM reconciler_rounds WHERE id = $1", rnd.id)
    assert row["dry_run"] and ghost in row["findings"]

    real = await reconciler(cluster_cfg, pool, nc)
    first = await real.one_round()
    assert finding(first, "orphan", ghost).action == "wait", "seen once: the grace starts"
    second = await real.one_round()
    assert finding(second, "orphan", ghost).action == "sweep"
    assert second.done.as_json().get("sweep_container") == {"removed": 1}
    assert not await exists(hostd, cid)
    third = await real.one_round()
    assert finding(third, "orphan", ghost) is None, "nothing left to find"


async def test_a_running_instance_without_a_container_is_marked_lost(cluster_cfg, pool, nc, hostd, host_row, uid):
    await hostd.start()
    iid, app = f"gone{uid}-000000000001", f"gone{uid}"
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, desired) "
                       "VALUES ($1, $2, 1, $3, 1, 0.1, 16, 'RUNNING', 'KILLED')", iid, app, hostd.host)
    rec = await reconciler(cluster_cfg, pool, nc)
    assert finding(await rec.one_round(), "missing", iid).action == "wait"
    rnd = await rec.one_round()
    assert rnd.done.as_json()["lose"] == {"done": 1}
    row = await pool.fetchrow("SELECT state, reason FROM instances WHERE id = $1", iid)
    assert row["state"] == "LOST" and "reconciler" in row["reason"]
    assert await pool.fetchval("SELECT count(*) FROM instance_events WHERE instance = $1 AND state = 'LOST'", iid) == 1


async def test_a_reconciler_with_a_stale_fence_writes_nothing(cluster_cfg, pool, nc, hostd, host_row, uid):
    await hostd.start()
    ghost = f"fenced{uid}-000000000001"
    cid = await hand_made(hostd, ghost, f"fenced{uid}")
    old = await reconciler(cluster_cfg, pool, nc)
    await old.one_round()
    await pool.fetchval(db.Queries("reconciler").fence_take, "newer")   # another reconciler took over
    with pytest.raises(Fenced):
        await old.one_round()
    assert await exists(hostd, cid), "a deposed reconciler sweeps nothing"
    new = await reconciler(cluster_cfg, pool, nc)
    await new.one_round()
    await new.one_round()
    await eventually(lambda: exists_not(hostd, cid), timeout=10, what="swept by the new leader")


async def exists_not(h: HostdUnderTest, cid: str) -> bool:
    return not await exists(h, cid)


async def test_pool_addresses_held_by_ended_or_unknown_instances_are_released(cluster_cfg, pool, nc, uid):
    addrs = {f"198.19.254.{10 + k}": who for k, who in enumerate(
        [f"nobody{uid}-000000000001", f"ended{uid}-000000000001", f"live{uid}-000000000001", f"young{uid}-000000000001"])}
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) VALUES "
                       "($1, 'a', 1, 'hz', 1, 0, 0, 'KILLED'), ($2, 'a', 1, 'hz', 1, 0, 0, 'RUNNING')",
                       f"ended{uid}-000000000001", f"live{uid}-000000000001")
    for k, (ip, who) in enumerate(addrs.items()):
        age = "0 s" if who.startswith("young") else "1 hour"
        await pool.execute("INSERT INTO ipam_addresses (address, prefix, instance, taken_at) "
                           "VALUES ($1::inet, 24, $2, now() - $3::text::interval)", ip, who, age)
    try:
        dry = await reconciler(cluster_cfg, pool, nc, dry_run=True, grace_s=60.0)
        assert (await dry.one_round()).done.as_json()["release_addresses"]["would release"] >= 2
        assert await pool.fetchval("SELECT count(*) FROM ipam_addresses WHERE address = ANY($1::inet[]) "
                                   "AND instance IS NOT NULL", list(addrs)) == 4
        rnd = await (await reconciler(cluster_cfg, pool, nc, grace_s=60.0)).one_round()
        assert rnd.done.as_json()["release_addresses"]["done"] >= 2
        held = {r["a"]: r["instance"] for r in await pool.fetch(
            "SELECT host(address) AS a, instance FROM ipam_addresses WHERE address = ANY($1::inet[])", list(addrs))}
        assert held == {"198.19.254.10": None, "198.19.254.11": None, "198.19.254.12": f"live{uid}-000000000001",
                        "198.19.254.13": f"young{uid}-000000000001"}
    finally:
        await pool.execute("DELETE FROM ipam_addresses WHERE address = ANY($1::inet[])", list(addrs))
        await pool.execute("DELETE FROM instances WHERE id = ANY($1::text[])",
                           [f"ended{uid}-000000000001", f"live{uid}-000000000001"])
