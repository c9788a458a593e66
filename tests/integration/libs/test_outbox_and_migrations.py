"""The outbox relay against real PostgreSQL and JetStream; migrations applied twice."""
from __future__ import annotations

import asyncio
import contextlib
import uuid

from nats.js.api import ConsumerConfig, DeliverPolicy

from prometheus_client import REGISTRY

from libs import db, messages, outbox, subjects
from tests.support.wait import eventually


async def test_migrations_are_idempotent(pool):
    assert await db.migrate(pool) == []
    versions = [r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in db.migration_files()]


async def _stream_msgs(js, subject: str, expect_at_most: int) -> list[bytes]:
    sub = await js.pull_subscribe(subject, durable=None, stream=subjects.ENDPOINTS.name,
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    out: list[bytes] = []
    try:
        while True:
            got = await sub.fetch(expect_at_most + 1, timeout=1)
            out += [m.data for m in got]
    except Exception:  # noqa: BLE001 - fetch timeout: nothing more
        pass
    await sub.unsubscribe()
    return out


async def test_relay_republish_after_crash_is_deduplicated(pool, nc, uid):
    """A relay that published but crashed before deleting its rows publishes them again on
    restart; JetStream drops the copies because the msg ids repeat."""
    js = nc.jetstream()
    app = f"ob-{uid}"
    # ENDPOINTS (limits retention) rather than DEPLOY (a work queue the placer may be consuming).
    items = [(subjects.endpoints(app), f"ep:{app}:{k}", messages.EndpointsChanged(app=app, endpoints=[], seq=k))
             for k in range(5)]
    relay = outbox.Relay(pool, js)
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, items)
    assert await relay.drain_once() >= 5
    # The "crash": the rows come back as if the DELETE never committed.
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, items)
    assert await relay.drain_once() >= 5
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE msg_id LIKE $1", f"ep:{app}:%") == 0
    got = await _stream_msgs(js, subjects.endpoints(app), 10)
    assert sorted(messages.decode(d, messages.EndpointsChanged).seq for d in got) == [0, 1, 2, 3, 4]


async def test_rolled_back_transaction_publishes_nothing(pool, nc, uid):
    js = nc.jetstream()
    app = f"rb-{uid}"

    class Boom(Exception):
        pass

    try:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, [(subjects.endpoints(app), f"x:{uuid.uuid4()}",
                                         messages.EndpointsChanged(app=app, endpoints=[], seq=1))])
            raise Boom
    except Boom:
        pass
    await outbox.Relay(pool, js).drain_once()
    assert await _stream_msgs(js, subjects.endpoints(app), 1) == []


async def test_relay_claims_only_the_kinds_it_owns(pool, nc, uid):
    """A placements relay leaves endpoint announcements to the registry's relay, and the other
    way round (the claim is by the subject's kind, a generated column)."""
    js = nc.jetstream()
    app, host = f"kd-{uid}", f"kh-{uid}"
    placement = messages.Placement(instance=f"{app}-1", app=app, version=1, host=host, epoch=1, action="stop",
                                   spec=messages.ContainerSpec(image="", cmd=[], env={}, labels={}, cpus=0,
                                                               mem_mb=0, ports=[]))
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, [
            (subjects.place(host), f"kd:{uid}:place", placement),
            (subjects.endpoints(app), f"kd:{uid}:ep", messages.EndpointsChanged(app=app, endpoints=[], seq=1))])
    kinds = dict(await pool.fetch("SELECT msg_id, kind FROM outbox WHERE msg_id LIKE $1", f"kd:{uid}:%"))
    assert kinds == {f"kd:{uid}:place": "place", f"kd:{uid}:ep": "endpoints"}
    endpoints_relay = outbox.Relay(pool, js, subjects=[subjects.ENDPOINTS_ALL])
    await endpoints_relay.drain_once()
    left = [r["msg_id"] for r in await pool.fetch("SELECT msg_id FROM outbox WHERE msg_id LIKE $1", f"kd:{uid}:%")]
    assert left == [f"kd:{uid}:place"]
    await pool.execute("DELETE FROM outbox WHERE msg_id = $1", f"kd:{uid}:place")   # no hostd for that host here


def _claims(kind: str) -> float:
    return REGISTRY.get_sample_value("noops_outbox_claims_total", {"kind": kind}) or 0.0


async def test_a_notification_wakes_only_the_relays_of_the_kinds_written(pool, nc, uid):
    """A commit's NOTIFY names the kinds it wrote: the relay of those kinds publishes at once
    (long before its slow poll), the relays of other kinds make no claim at all."""
    js = nc.jetstream()
    app, host = f"wk-{uid}", f"wh-{uid}"
    endpoints_relay = outbox.Relay(pool, js, subjects=[subjects.ENDPOINTS_ALL], poll_s=60)
    place_relay = outbox.Relay(pool, js, subjects=[subjects.PLACE_ALL], poll_s=60)
    before = {k: _claims(k) for k in ("endpoints", "place")}
    tasks = [asyncio.create_task(r.run()) for r in (endpoints_relay, place_relay)]

    async def gone(msg_id: str) -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE msg_id = $1", msg_id) == 0

    try:
        # Each relay's first drain (every kind it owns) comes after it LISTENs.
        await eventually(lambda: all(_claims(k) > before[k] for k in before), timeout=10, what="the relays' first claims")
        at_rest = {k: _claims(k) for k in before}
        placement = messages.Placement(instance=f"{app}-1", app=app, version=1, host=host, epoch=1, action="stop",
                                       spec=messages.ContainerSpec(image="", cmd=[], env={}, labels={}, cpus=0,
                                                                   mem_mb=0, ports=[]))
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, [(subjects.place(host), f"wk:{uid}:place", placement)])
        await eventually(lambda: gone(f"wk:{uid}:place"), timeout=10, what="the placement published")
        assert _claims("place") == at_rest["place"] + 1
        assert _claims("endpoints") == at_rest["endpoints"], "the endpoints relay woke for a placement"
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, [(subjects.endpoints(app), f"wk:{uid}:ep",
                                         messages.EndpointsChanged(app=app, endpoints=[], seq=1))])
        await eventually(lambda: gone(f"wk:{uid}:ep"), timeout=10, what="the announcement published")
        assert _claims("endpoints") == at_rest["endpoints"] + 1
        assert _claims("place") == at_rest["place"] + 1, "the placements relay woke for an announcement"
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await pool.execute("DELETE FROM outbox WHERE msg_id LIKE $1", f"wk:{uid}:%")


def test_a_notification_payload_names_kinds_or_all():
    assert outbox.woken_kinds("instance,endpoints") == {"instance", "endpoints"}
    assert outbox.woken_kinds("") is None          # migration 0015's triggers, older writers: all kinds
    assert outbox.woken_kinds(",") is None
    assert outbox.woken_kinds("deploy@noops-gateway") == {"deploy"} and outbox.writer_of("deploy@noops-gateway") == "gateway"
    assert outbox.woken_kinds("@noops-placer") is None and outbox.writer_of("instance") == ""
    assert outbox.writer_of("host@psql") == ""     # not one of ours: every relay of the kind


async def test_pools_plan_with_the_configured_page_cost_and_custom_plans(cluster_cfg):
    for cost, shown in ((db.DEFAULT_RANDOM_PAGE_COST, "1.1"), (4.0, "4")):
        p = await db.connect(cluster_cfg.db_dsn, min_size=1, max_size=1, random_page_cost=cost)
        try:
            assert await p.fetchval("SHOW random_page_cost") == shown
            assert await p.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
        finally:
            await p.close()


async def test_a_pooled_connection_comes_back_without_the_relays_listen(cluster_cfg, nc):
    """Pools skip asyncpg's session reset (libs/db.py keep_session): what noops leaves on a
    connection must be gone by itself.  The relay's LISTEN is (remove_listener UNLISTENs), and a
    transaction left open is rolled back."""
    pool = await db.connect(cluster_cfg.db_dsn, min_size=2, max_size=2)
    try:
        relay = outbox.Relay(pool, nc.jetstream(), subjects=[subjects.ENDPOINTS_ALL], poll_s=60)
        before = _claims("endpoints")
        task = asyncio.create_task(relay.run())
        await eventually(lambda: _claims("endpoints") > before, timeout=10, what="the relay's first claim (after its LISTEN)")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        first, second = await pool.acquire(), await pool.acquire()   # both of the pool's connections
        try:
            for conn in (first, second):
                assert await conn.fetch("SELECT pg_listening_channels()") == []
            await first.execute("BEGIN")
        finally:
            await pool.release(first)
            await pool.release(second)
        first, second = await pool.acquire(), await pool.acquire()
        try:
            for conn in (first, second):
                assert await conn.fetchval("SELECT txid_current_if_assigned()") is None
                assert not conn.is_in_transaction()
        finally:
            await pool.release(first)
            await pool.release(second)
    finally:
        await pool.close()


async def test_one_claim_takes_every_due_kind_in_id_order_and_a_full_kind_comes_again(pool, nc, uid):
    """A relay of two kinds claims both in one statement (one transaction), at most ``batch`` of
    each, published in id order; a kind that filled its batch is due again, the other is not."""
    js = nc.jetstream()
    app = f"mk-{uid}"
    relay = outbox.Relay(pool, js, subjects=[subjects.ENDPOINTS_ALL, subjects.DEPLOY_ALL], batch=3)
    announcements = [(subjects.endpoints(app), f"mk:{uid}:ep{k}", messages.EndpointsChanged(app=app, endpoints=[], seq=k))
                     for k in range(4)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, [*announcements[:2], (subjects.deploy(app), f"mk:{uid}:deploy",
                                                          messages.DeployRequest(app=app)), *announcements[2:]])
    before = {k: _claims(k) for k in ("endpoints", "deploy")}
    relay._due = set()
    assert await relay.drain_once() == 4            # 3 announcements (the batch) + the deploy request
    assert {k: _claims(k) - before[k] for k in before} == {"endpoints": 1, "deploy": 1}
    assert relay._more and relay._due == {"endpoints"}
    left = [r["msg_id"] for r in await pool.fetch("SELECT msg_id FROM outbox WHERE msg_id LIKE $1", f"mk:{uid}:%")]
    assert left == [f"mk:{uid}:ep3"]                 # the newest: id order within the kind
    assert await relay.drain_once(relay._due) == 1 and not relay._more
    got = await _stream_msgs(js, subjects.endpoints(app), 10)
    assert [messages.decode(d, messages.EndpointsChanged).seq for d in got] == [0, 1, 2, 3]


async def test_a_relay_of_every_kind_comes_again_after_a_full_batch_of_mixed_kinds(pool, nc, uid):
    """claim_all takes one batch in all: a batch full of several kinds (none alone fills it)
    leaves more to do at once.  Rows other tests left come first (id order): the batch is sized
    to end inside this test's three, newest of all."""
    js = nc.jetstream()
    app = f"ma-{uid}"
    others = await pool.fetchval("SELECT count(*) FROM outbox")
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, [
            (subjects.endpoints(app), f"ma:{uid}:ep", messages.EndpointsChanged(app=app, endpoints=[], seq=1)),
            (subjects.deploy(app), f"ma:{uid}:deploy", messages.DeployRequest(app=app)),
            (subjects.endpoints(app), f"ma:{uid}:ep2", messages.EndpointsChanged(app=app, endpoints=[], seq=2))])
    relay = outbox.Relay(pool, js, batch=others + 2)
    await relay.drain_once()
    assert relay._more, "a full batch of mixed kinds was taken for the last"
    await relay.drain_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE msg_id LIKE $1", f"ma:{uid}:%") == 0
