"""Poison messages against real JetStream and PostgreSQL: one message whose handler raises is
terminated after max_deliver and recorded as a dead letter while its neighbours are handled at
once; one the server gives up on is recorded from its advisory; an outbox row NATS refuses is
set aside while the rows after it are published."""
from __future__ import annotations

import asyncio
import contextlib

from nats.js.api import ConsumerConfig, DeliverPolicy

from libs import bus, deadletters, messages, outbox, retry, subjects
from tests.support.wait import eventually

FAST = retry.Policy(base_s=0.05, cap_s=0.2)


async def _publish(js, app: str, seqs) -> None:
    for k in seqs:
        await js.publish(subjects.endpoints(app), messages.encode(messages.EndpointsChanged(app=app, endpoints=[], seq=k)))


def _seq(m) -> int:
    return messages.decode(m.data, messages.EndpointsChanged).seq


async def _dead_letter(pool, consumer: str):
    return await pool.fetchrow("SELECT * FROM dead_letters WHERE consumer = $1", consumer)


async def test_a_poison_message_is_terminated_and_recorded_while_the_next_is_handled(pool, nc, uid):
    js = nc.jetstream()
    app = f"poison-{uid}"
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"poison-{uid}", subjects.endpoints(app))
    handled: list[int] = []
    calls: list[int] = []

    async def handler(msgs):
        calls.append(len(msgs))
        if any(_seq(m) == 0 for m in msgs):
            raise ValueError("cannot handle message 0")
        handled.extend(_seq(m) for m in msgs)
        return [bus.ACK] * len(msgs)

    stop = asyncio.Event()
    await _publish(js, app, range(3))   # one fetch: the poison and its neighbours in one batch
    loop = asyncio.create_task(bus.pull_loop(js, consumer, handler, stop=stop, policy=FAST, max_deliver=3,
                                             dead_letters=deadletters.Recorder(pool, source="test")))
    try:
        await eventually(lambda: sorted(handled) == [1, 2], timeout=5, what="the poison's neighbours handled")
        row = await eventually(lambda: _dead_letter(pool, consumer.durable), timeout=15, what="the dead letter")
        assert (row["reason"], row["deliveries"], row["subject"]) == ("handler_error", 3, subjects.endpoints(app))
        assert "cannot handle message 0" in row["error"] and f'"app":"{app}"' in row["excerpt"]
        # Terminated: nothing left pending or unacknowledged, and the next message is handled promptly.
        await _publish(js, app, [3])
        await eventually(lambda: 3 in handled, timeout=5, what="the next message")
        async def settled():   # the ack follows the handler's return: wait for it to reach the server
            info = await js.consumer_info(subjects.ENDPOINTS.name, consumer.durable)
            return info if info.num_ack_pending == 0 and info.num_pending == 0 else None
        info = await eventually(settled, timeout=5, what="nothing pending or unacknowledged")
        assert info.config.max_deliver == 3
        assert handled.count(1) == 1   # the neighbours were not delivered again
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)
        await pool.execute("DELETE FROM dead_letters WHERE consumer = $1", consumer.durable)


async def test_a_backend_outage_holds_the_batch_and_costs_no_delivery(pool, nc, uid):
    """The handler fails transiently (as during a database outage) more times than max_deliver
    allows: the messages are held and handled once it recovers, none becomes a dead letter."""
    js = nc.jetstream()
    app = f"outage-{uid}"
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"outage-{uid}", subjects.endpoints(app))
    handled: list[int] = []
    failures = 0

    async def handler(msgs):
        nonlocal failures
        if failures < 6:
            failures += 1
            raise ConnectionRefusedError("the task log is away")
        handled.extend(_seq(m) for m in msgs)
        return [bus.ACK] * len(msgs)

    stop = asyncio.Event()
    await _publish(js, app, range(2))
    loop = asyncio.create_task(bus.pull_loop(js, consumer, handler, stop=stop, policy=FAST, max_deliver=3,
                                             dead_letters=deadletters.Recorder(pool, source="test")))
    try:
        await eventually(lambda: sorted(handled) == [0, 1], timeout=10, what="both handled after the outage")
        info = await js.consumer_info(subjects.ENDPOINTS.name, consumer.durable)
        assert info.num_redelivered == 0
        assert await _dead_letter(pool, consumer.durable) is None
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)


async def test_an_existing_consumer_gets_the_new_max_deliver(nc, uid):
    js = nc.jetstream()
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"upd-{uid}", subjects.endpoints(f"upd-{uid}"))
    try:
        await bus.ensure_consumer(js, consumer, max_deliver=5)
        await bus.ensure_consumer(js, consumer, max_deliver=7)
        info = await js.consumer_info(subjects.ENDPOINTS.name, consumer.durable)
        assert info.config.max_deliver == 7
    finally:
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)


async def test_a_message_the_server_gave_up_on_is_recorded_from_its_advisory(pool, nc, uid):
    """hostd has no task log: a placement it keeps nak'ing reaches max_deliver and the server's
    advisory is what records it (here the admin connection plays the registry)."""
    js = nc.jetstream()
    app = f"adv-{uid}"
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"adv-{uid}", subjects.endpoints(app))
    recorder = deadletters.AdvisoryRecorder(nc, js, deadletters.Recorder(pool, source="test"))
    await recorder.start()

    async def always_later(msgs):
        return [bus.nak(0.05)] * len(msgs)

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, consumer, always_later, stop=stop, policy=FAST, max_deliver=2))
    try:
        await _publish(js, app, [7])
        row = await eventually(lambda: _dead_letter(pool, consumer.durable), timeout=15, what="the advisory's record")
        assert (row["reason"], row["source"], row["subject"]) == ("max_deliveries", "advisory", subjects.endpoints(app))
        assert '"seq":7' in row["excerpt"]
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
        await recorder.stop()
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)
        await pool.execute("DELETE FROM dead_letters WHERE consumer = $1", consumer.durable)


async def test_an_oversized_outbox_row_is_set_aside_and_the_rows_after_it_are_published(pool, nc, uid):
    js = nc.jetstream()
    app = f"big-{uid}"
    small = [messages.EndpointsChanged(app=app, endpoints=[], seq=k) for k in (0, 2)]
    huge = messages.EndpointsChanged(app=app, endpoints=[messages.Endpoint(instance="x" * (nc.max_payload + 10),
                                                                           host="h", ip="", ports={})], seq=1)
    items = [(subjects.endpoints(app), f"big:{app}:{m.seq}", m) for m in (small[0], huge, small[1])]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, items)
    relay = outbox.Relay(pool, js, subjects=(subjects.ENDPOINTS_ALL,), max_attempts=2, policy=FAST)
    sub = await js.pull_subscribe(subjects.endpoints(app), durable=None, stream=subjects.ENDPOINTS.name,
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        await relay.drain_once()
        got = []
        async def two_published() -> bool:
            with contextlib.suppress(Exception):
                got.extend(await sub.fetch(2, timeout=0.5))
            return len(got) >= 2
        await eventually(two_published, timeout=10, what="the rows around the oversized one published")
        assert sorted(_seq(m) for m in got) == [0, 2]
        row = await pool.fetchrow("SELECT attempts, last_error FROM outbox WHERE msg_id = $1", f"big:{app}:1")
        assert row["attempts"] == 1 and "max_payload" in row["last_error"]
        await relay.drain_once()   # the second refusal sets it aside
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE msg_id LIKE $1", f"big:{app}:%") == 0
        aside = await pool.fetchrow("SELECT * FROM outbox_set_aside WHERE msg_id = $1", f"big:{app}:1")
        assert aside["attempts"] == 2 and "max_payload" in aside["reason"]
        dl = await pool.fetchrow("SELECT * FROM dead_letters WHERE consumer = 'outbox' AND stream_seq = $1", aside["id"])
        assert dl["reason"] == "publish_refused" and dl["subject"] == subjects.endpoints(app)
    finally:
        await sub.unsubscribe()
        await pool.execute("DELETE FROM outbox WHERE msg_id LIKE $1", f"big:{app}:%")
        ids = [r["id"] for r in await pool.fetch("DELETE FROM outbox_set_aside WHERE msg_id LIKE $1 RETURNING id",
                                                 f"big:{app}:%")]
        await pool.execute("DELETE FROM dead_letters WHERE consumer = 'outbox' AND stream_seq = ANY($1::bigint[])", ids)
