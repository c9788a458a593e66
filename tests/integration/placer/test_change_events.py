"""Change events (migration 0015): instance, deployment and host changes are announced through
the outbox in the transaction that makes them, batched per app, decoded strictly as
libs/messages.py's types, and reach the NOOPS_EVENTS stream through the registry's relay."""
from __future__ import annotations

import asyncio
import contextlib

import pytest_asyncio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs import db, messages, natsauth, outbox, subjects
from services.placer import liveness
from tests.integration.placer.taskrows import add_app, add_host, committer, report
from tests.support.events import event_subjects
from tests.support.wait import eventually


@pytest_asyncio.fixture
async def made(pool, nc):
    out: dict[str, list[str]] = {"apps": [], "hosts": []}
    yield out
    apps, hosts = out["apps"], out["hosts"]
    mine = event_subjects(apps, hosts) + [subjects.place(h) for h in hosts]
    async with pool.acquire() as conn, conn.transaction():
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM instances WHERE app = ANY($1)", apps)]
        await conn.execute("DELETE FROM outbox WHERE subject = ANY($1)", mine)
        await conn.execute("DELETE FROM instance_events WHERE instance = ANY($1)", ids)
        for table in ("instances", "deployments", "app_versions", "app_failures"):
            await conn.execute(f"DELETE FROM {table} WHERE app = ANY($1)", apps)
        await conn.execute("DELETE FROM apps WHERE id = ANY($1)", apps)
        await conn.execute("DELETE FROM hosts WHERE id = ANY($1)", hosts)
    js = nc.jetstream()
    for s in mine:
        if subjects.event_kind(s) in messages.EVENT_TYPES:
            with contextlib.suppress(Exception):
                await js.purge_stream(subjects.EVENTS.name, subject=s)


async def _host(pool, made, host: str) -> None:
    made["hosts"].append(host)
    await add_host(pool, host)


async def _app(pool, made, app_id: str, instances: int, host: str) -> None:
    made["apps"].append(app_id)
    await add_app(pool, app_id, instances, host)


async def _queued(pool, subject: str, typ: type[messages.M]) -> list[messages.M]:
    rows = await pool.fetch("SELECT payload FROM outbox WHERE subject = $1 ORDER BY id", subject)
    return [messages.decode(bytes(r["payload"]), typ) for r in rows]


async def test_a_commit_announces_its_placements_once_per_app(pool, uid, made) -> None:
    host, big, small = f"ce{uid}", f"big-{uid}", f"small-{uid}"
    await _host(pool, made, host)
    await _app(pool, made, big, 130, host)
    await _app(pool, made, small, 2, host)
    assert (await (await committer(pool)).reconcile([big, small])).placed == 132

    batches = await _queued(pool, subjects.instance_events(big), messages.InstanceEvents)
    assert [len(b.changes()) for b in batches] == [130]           # one message for the app and commit
    items = [i for b in batches for i in b.changes()]
    assert {i.instance for i in items} == {r["id"] for r in await pool.fetch(
        "SELECT id FROM instances WHERE app = $1", big)}
    assert all((i.app, i.host, i.state, i.reason, i.health) == (big, host, "PENDING", "placed", None) for i in items)
    assert items[0].at > 1.7e9
    assert [len(b.changes()) for b in await _queued(pool, subjects.instance_events(small), messages.InstanceEvents)] == [2]

    # What the trigger announces is grouped too: at most 64 changes a message, in order.
    ids = [i.instance for i in items]
    await report(pool, ids, "STARTING")
    after = (await _queued(pool, subjects.instance_events(big), messages.InstanceEvents))[1:]
    assert [len(b.changes()) for b in after] == [64, 64, 2]
    assert [i.instance for b in after for i in b.changes()] == ids

    (deps,) = await _queued(pool, subjects.deployment_events(big), messages.DeploymentEvents)
    assert [(d.app, d.version, d.state) for d in deps.items] == [(big, 1, "running")]


async def test_a_host_marked_down_is_announced_with_its_lost_instances(pool, nc, uid, made) -> None:
    host, app_id = f"cd{uid}", f"down-{uid}"
    await _host(pool, made, host)
    await _app(pool, made, app_id, 2, host)
    c = await committer(pool)
    await c.reconcile([app_id])
    js = nc.jetstream()
    start = (await js.stream_info(subjects.EVENTS.name)).state.last_seq + 1
    relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("registry"), poll_s=0.2)
    task = asyncio.create_task(relay.run())
    try:
        await liveness.mark_down(pool, db.Queries("placer"), [host], fence_token=c.token)
        info = await js.add_consumer(subjects.EVENTS.name, ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
            inactive_threshold=30.0))
        sub = await js.pull_subscribe_bind(durable=info.name, stream=subjects.EVENTS.name)
        seen: list[tuple[str, object]] = []

        async def down_and_lost() -> bool:
            with contextlib.suppress(Exception):
                for m in await sub.fetch(100, timeout=0.5):
                    kind = subjects.event_kind(m.subject)
                    seen.extend((kind, i) for i in messages.decode(m.data, messages.EVENT_TYPES[kind]).changes())
            hosts = [i for k, i in seen if k == "host" and i.host == host]
            lost = [i for k, i in seen if k == "instance" and i.app == app_id and i.state == "LOST"]
            return bool(hosts) and hosts[-1].state == "DOWN" and len(lost) == 2

        await eventually(down_and_lost, timeout=10, what="host DOWN and its instances LOST on the stream")
        (down,) = [i for k, i in seen if k == "host" and i.host == host and i.state == "DOWN"]
        assert (down.draining, down.cordoned, down.epoch) == (False, False, 2)
        await js.delete_consumer(subjects.EVENTS.name, info.name)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_only_real_host_changes_are_announced(pool, uid, made) -> None:
    """A heartbeat rewrites state = 'UP' every few seconds: no event for that."""
    host = f"cu{uid}"
    await _host(pool, made, host)
    await pool.execute("UPDATE hosts SET state = 'UP', last_seen = now() WHERE id = $1", host)
    await pool.execute("UPDATE hosts SET draining = true WHERE id = $1", host)
    events = [i for b in await _queued(pool, subjects.host_events(host), messages.HostEvents) for i in b.items]
    assert [(e.state, e.draining) for e in events] == [("UP", False), ("UP", True)]


async def test_report_batches_are_announced_with_the_facts_they_wrote(pool, uid, made) -> None:
    """The registry's one-statement write (record_batch: UPDATE instances and INSERT
    instance_events in CTEs): the trigger reads the instance as that statement left it."""
    host, app_id = f"cr{uid}", f"rep-{uid}"
    await _host(pool, made, host)
    await _app(pool, made, app_id, 2, host)
    await (await committer(pool)).reconcile([app_id])
    ids = sorted(r["id"] for r in await pool.fetch("SELECT id FROM instances WHERE app = $1", app_id))
    n = len(ids)
    await report(pool, ids, "STARTING", ips=["198.18.7.1", "198.18.7.2"])
    await report(pool, ids, "RUNNING", healthy=True, ips=["198.18.7.1", "198.18.7.2"])
    batches = await _queued(pool, subjects.instance_events(app_id), messages.InstanceEvents)
    items = [i for b in batches for i in b.changes()]
    assert [i.state for i in items] == ["PENDING"] * n + ["STARTING"] * n + ["RUNNING"] * n   # in order
    ips = ["198.18.7.1", "198.18.7.2"]
    assert sorted((i.instance, i.ip, i.health) for i in items[n:2 * n]) == [(i, ip, None) for i, ip in zip(ids, ips)]
    assert sorted((i.instance, i.ip, i.health) for i in items[2 * n:]) == [(i, ip, "healthy") for i, ip in zip(ids, ips)]


async def test_deployment_changes_are_announced_and_other_writes_are_not(pool, uid, made) -> None:
    host, app_id = f"cp{uid}", f"dep-{uid}"
    await _host(pool, made, host)
    await _app(pool, made, app_id, 1, host)
    await (await committer(pool)).reconcile([app_id])
    await pool.execute("UPDATE deployments SET updated_at = now() WHERE app = $1", app_id)   # nothing to say
    await pool.execute("UPDATE deployments SET state = 'paused', reason = 'operator' WHERE app = $1", app_id)
    got = [d for b in await _queued(pool, subjects.deployment_events(app_id), messages.DeploymentEvents)
           for d in b.changes()]
    assert [(d.state, d.reason) for d in got] == [("running", ""), ("paused", "operator")]
