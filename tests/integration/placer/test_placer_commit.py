"""The committer against the real task log: pool addresses travel with placements, an exhausted
pool holds an app back with the reason, every plan checks the fencing token."""
from __future__ import annotations

import pytest_asyncio

from libs import ipam, messages, subjects
from tests.integration.placer.taskrows import add_app, add_host, committer
from tests.support.events import event_subjects


@pytest_asyncio.fixture
async def cleanup(pool):
    """Rows this module adds must not outlive it: later e2e tests share the database, and a
    fake host that looks online would be offered placements."""
    made: dict[str, list[str]] = {"hosts": [], "apps": []}
    yield made
    apps, hosts = made["apps"], made["hosts"]
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM instances WHERE app = ANY($1)", apps)]
    async with pool.acquire() as conn, conn.transaction():
        await ipam.release(conn, ids)
        await conn.execute("DELETE FROM outbox WHERE subject = ANY($1)",
                           [subjects.place(h) for h in hosts] + event_subjects(apps, hosts))
        await conn.execute("DELETE FROM instance_events WHERE instance = ANY($1)", ids)
        await conn.execute("DELETE FROM instances WHERE app = ANY($1)", apps)
        await conn.execute("DELETE FROM deployments WHERE app = ANY($1)", apps)
        await conn.execute("DELETE FROM app_versions WHERE app = ANY($1)", apps)
        await conn.execute("DELETE FROM apps WHERE id = ANY($1)", apps)
        await conn.execute("DELETE FROM hosts WHERE id = ANY($1)", hosts)


async def test_pool_addresses_ride_with_placements(pool, uid, cleanup):
    host, app_id = f"hp{uid}", f"pool-{uid}"
    cleanup["hosts"].append(host)
    cleanup["apps"].append(app_id)
    await add_host(pool, host, "pool")
    async with pool.acquire() as conn:
        await ipam.add_range(conn, "198.19.250.10", "198.19.250.60", 24)
    await add_app(pool, app_id, 3, host)
    res = await (await committer(pool)).reconcile([app_id])
    assert res.placed == 3
    rows = await pool.fetch("SELECT payload FROM outbox WHERE subject = $1", subjects.place(host))
    assert len(rows) == 1   # one message for the host, three placements in it
    placements = messages.decode(bytes(rows[0]["payload"]), messages.Placements).items
    assert len(placements) == 3 and all(p.host == host for p in placements)
    addresses = [p.address for p in placements]
    assert all(a.endswith("/24") for a in addresses) and len(set(addresses)) == 3
    held = await pool.fetch("SELECT instance FROM ipam_addresses WHERE instance = ANY($1)",
                            [p.instance for p in placements])
    assert len(held) == 3


async def test_exhausted_pool_holds_the_app_back_with_a_reason(pool, uid, cleanup):
    host, app_id = f"hx{uid}", f"exh-{uid}"
    cleanup["hosts"].append(host)
    cleanup["apps"].append(app_id)
    await add_host(pool, host, "pool")
    async with pool.acquire() as conn:
        free = await ipam.free(conn)
    await add_app(pool, app_id, free + 1, host)
    res = await (await committer(pool)).reconcile([app_id])
    row = await pool.fetchrow("SELECT status, status_reason FROM apps WHERE id = $1", app_id)
    assert row["status"] == "waiting" and "address pool exhausted" in row["status_reason"]
    assert await pool.fetchval("SELECT count(*) FROM instances WHERE app = $1", app_id) == 0
    assert res.placed >= 0


async def test_host_ports_from_heartbeats_and_live_instances(pool, uid, cleanup):
    """A host where something listens on the port is skipped; a port held by an instance in the task
    log is taken for the next app (a fresh snapshot, as after a placer restart)."""
    hosts = [f"hq{uid}-{k}" for k in range(3)]
    cleanup["hosts"].extend(hosts)
    for h in hosts:
        await add_host(pool, h, "dhcp")
    await pool.execute("UPDATE hosts SET ports_listening = '{22, 9000}' WHERE id = $1", hosts[2])
    first, second = f"hpa-{uid}", f"hpb-{uid}"
    cleanup["apps"].extend([first, second])
    ports = [{"name": "svc", "container_port": 9000, "host_port": 9000}]
    await add_app(pool, first, 3, f"hq{uid}-.*", ports=ports)
    res = await (await committer(pool)).reconcile([first])
    assert res.placed == 2
    placed = {r["host"] for r in await pool.fetch("SELECT host FROM instances WHERE app = $1", first)}
    assert placed == set(hosts[:2])
    row = await pool.fetchrow("SELECT status, status_reason FROM apps WHERE id = $1", first)
    assert "host port 9000 in use: 1 host" in row["status_reason"], row

    await add_app(pool, second, 1, f"hq{uid}-.*", ports=ports)
    assert (await (await committer(pool)).reconcile([second])).placed == 0
    row = await pool.fetchrow("SELECT status_reason FROM apps WHERE id = $1", second)
    assert "host port 9000 in use: 3 hosts" in row["status_reason"], row
