"""Outbox notifications name the kinds written and the writer (migration 0020), so that one relay
claims them: the writer's own when it publishes the kind, else the kind's first owner."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from libs import db, messages, natsauth, outbox, subjects
from tests.support.wait import eventually


@pytest.fixture
async def placer_pool(cluster_cfg):
    p = await db.connect(cluster_cfg.db_dsn, min_size=1, max_size=2, service="placer")
    yield p
    await p.close()


async def test_payloads_name_the_kinds_and_the_writing_service(pool, placer_pool, uid):
    """Both ways rows reach the outbox: ``enqueue`` (the services' own messages) and migration
    0015's triggers (change events, whoever makes the change)."""
    got: list[str] = []

    def heard(_conn, _pid, _channel, payload: str) -> None:
        got.append(payload)
    listener = await pool.acquire()
    await listener.add_listener(outbox.CHANNEL, heard)
    app, host = f"nw-{uid}", f"nwh-{uid}"
    try:
        async with placer_pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, [(subjects.endpoints(app), f"nw:{uid}:ep",
                                         messages.EndpointsChanged(app=app, endpoints=[], seq=1))])
        await placer_pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen, cordoned) VALUES ($1, 1, 1, now(), true)",
                                  host)
        # Other writers of the session may notify meanwhile: these two must be among what was heard.
        await eventually(lambda: {"endpoints@noops-placer", "host@noops-placer"} <= set(got), timeout=10,
                         what="both notifications, each naming its kind and the placer")
        assert [(outbox.woken_kinds(p), outbox.writer_of(p)) for p in ("endpoints@noops-placer", "host@noops-placer")] == [
            ({"endpoints"}, "placer"), ({"host"}, "placer")]
    finally:
        await listener.remove_listener(outbox.CHANNEL, heard)
        await pool.release(listener)
        await pool.execute("DELETE FROM hosts WHERE id = $1", host)
        await pool.execute("DELETE FROM outbox WHERE msg_id LIKE $1 OR subject = $2", f"nw:{uid}:%", subjects.host_events(host))


@pytest.mark.parametrize(("service", "payload", "due"), [
    # deploy: three services' relays publish it; the writer's own answers, the others sleep.
    ("registry", "deploy@noops-registry", {"deploy"}),
    ("gateway", "deploy@noops-registry", None),
    ("reconciler", "deploy@noops-gateway", None),
    ("gateway", "deploy@noops-gateway", {"deploy"}),
    # A kind the writer does not publish: its first owner answers.
    ("registry", "host,endpoints@noops-placer", {"host", "endpoints"}),
    ("registry", "deploy,instance@noops-placer", {"instance"}),   # deploy: the gateway's (first owner)
    ("gateway", "deploy,instance@noops-placer", {"deploy"}),
    # No writer named (another client, an older payload): every relay of the kinds.
    ("gateway", "deploy", {"deploy"}),
    ("reconciler", "deploy@someone-else", {"deploy"}),
    ("placer", "deploy,endpoints@noops-registry", None),          # none of its kinds
], ids=["own-write", "other-owners-write", "other-owners-write-2", "own-write-gateway", "non-owner-writer",
        "non-owner-writer-split", "non-owner-writer-first-owner", "no-writer", "foreign-writer", "not-its-kinds"])
async def test_a_notification_wakes_the_relay_that_owes_the_publish(pool, nc, service, payload, due):
    relay = outbox.Relay(pool, nc.jetstream(), subjects=natsauth.relay_subjects(service), service=service)
    relay._due = set()   # as after a drain
    relay._on_notify(None, None, outbox.CHANNEL, payload)
    if due is None:
        assert not relay._wake.is_set() and relay._due == set()
    else:
        assert relay._wake.is_set() and relay._due == due


async def test_two_relays_of_a_shared_kind_wake_only_for_their_own_writes(cluster_cfg, nc, uid):
    """The registry's and the gateway's relays both publish deploy requests: each wakes for the
    rows its own service wrote and not for the other's, and every row is published at once
    (well before the 60 s polls)."""
    js = nc.jetstream()
    pools = {s: await db.connect(cluster_cfg.db_dsn, min_size=2, max_size=3, service=s) for s in ("registry", "gateway")}
    relays = {s: outbox.Relay(p, js, subjects=natsauth.relay_subjects(s), service=s, poll_s=60) for s, p in pools.items()}
    woke: dict[str, list[str]] = {s: [] for s in relays}
    for s, r in relays.items():   # what woke each relay (registered as the listener by run())
        on_notify = r._on_notify

        def recording(conn, pid, channel, payload, _s=s, _r=r, _on=on_notify):
            was = _r._wake.is_set()
            _on(conn, pid, channel, payload)
            if _r._wake.is_set() and not was:
                woke[_s].append(payload)
        r._on_notify = recording   # type: ignore[method-assign]
    tasks = [asyncio.create_task(r.run()) for r in relays.values()]
    app = f"sk-{uid}"

    async def gone(msg_id: str) -> bool:
        return await pools["registry"].fetchval("SELECT count(*) FROM outbox WHERE msg_id = $1", msg_id) == 0

    try:
        for writer in ("registry", "gateway"):
            async with pools[writer].acquire() as conn, conn.transaction():
                await outbox.enqueue(conn, [(subjects.deploy(app), f"sk:{uid}:{writer}", messages.DeployRequest(app=app))])
            await eventually(lambda: gone(f"sk:{uid}:{writer}"), timeout=10, what=f"the {writer}'s deploy request published")
        assert "deploy@noops-registry" in woke["registry"] and "deploy@noops-gateway" in woke["gateway"]
        assert "deploy@noops-gateway" not in woke["registry"] and "deploy@noops-registry" not in woke["gateway"]
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await pools["registry"].execute("DELETE FROM outbox WHERE msg_id LIKE $1", f"sk:{uid}:%")
        for p in pools.values():
            await p.close()


async def test_a_relay_listens_again_when_its_connection_is_lost(cluster_cfg, nc, uid):
    """PostgreSQL restarted or the backend terminated: the relay LISTENs again on a new
    connection, so the next commit is published at once, not at the next (60 s) poll."""
    pool = await db.connect(cluster_cfg.db_dsn, min_size=2, max_size=3, service="registry")
    relay = outbox.Relay(pool, nc.jetstream(), subjects=[subjects.ENDPOINTS_ALL], service="registry", poll_s=60)
    task = asyncio.create_task(relay.run())
    app = f"rl-{uid}"

    async def published(k: int) -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE msg_id = $1", f"rl:{uid}:{k}") == 0

    try:
        await eventually(lambda: relay._listening, timeout=10, what="the relay listening")
        first = relay._listener.get_server_pid()
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", first)
        await eventually(lambda: relay._listening and relay._listener.get_server_pid() != first, timeout=10,
                         what="the relay listening on another connection")
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, [(subjects.endpoints(app), f"rl:{uid}:1",
                                         messages.EndpointsChanged(app=app, endpoints=[], seq=1))])
        await eventually(lambda: published(1), timeout=10, what="the row published on its notification")
        relay._wake.clear()
        relay.kick()   # listening: the commit's own notification wakes it, the kick adds no drain
        assert not relay._wake.is_set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.execute("DELETE FROM outbox WHERE msg_id LIKE $1", f"rl:{uid}:%")
        await pool.close()
