"""bus.Puller against a real JetStream: a fetch returns what is there without waiting for the
batch to fill, what the open pull request delivers afterwards waits for the next fetch, an empty
consumer times out, and a refused request is an error (not an endless retry)."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.errors import TimeoutError as NatsTimeout

from libs import bus, messages, subjects
from tests.support.wait import eventually


async def _publish(js, app: str, seqs) -> None:
    for k in seqs:
        await js.publish(subjects.endpoints(app), messages.encode(messages.EndpointsChanged(app=app, endpoints=[], seq=k)))


def _seqs(msgs) -> list[int]:
    return [messages.decode(m.data, messages.EndpointsChanged).seq for m in msgs]


async def test_fetch_returns_what_is_there_and_keeps_the_rest_for_later(nc, uid):
    js = nc.jetstream()
    app = f"pl-{uid}"
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"pull-{uid}", subjects.endpoints(app))
    await bus.ensure_consumer(js, consumer)
    puller = bus.Puller(js, consumer)
    await puller.start()
    try:
        await _publish(js, app, range(3))
        # A batch of 100 with a 60 s timeout: nats-py's fetch would sit until it filled or timed out.
        got = await asyncio.wait_for(puller.fetch(100, timeout=60), 10)
        while len(got) < 3:   # the three may arrive in more than one read
            got += await asyncio.wait_for(puller.fetch(100, timeout=60), 10)
        assert _seqs(got) == [0, 1, 2]
        for m in got:
            await m.ack()
        await _publish(js, app, range(3, 5))   # delivered on the request still open
        later = await asyncio.wait_for(puller.fetch(1, timeout=60), 10)
        later += await asyncio.wait_for(puller.fetch(1, timeout=60), 10)
        assert _seqs(later) == [3, 4]           # one per fetch, in order
        for m in later:
            await m.ack()
        with pytest.raises(NatsTimeout):
            await puller.fetch(10, timeout=0.3)
    finally:
        await puller.close()
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)


async def test_a_request_the_server_ends_with_an_error_is_an_error(nc, uid):
    """The server ends a waiting request with a 409 status when, e.g., its consumer is deleted;
    the pull loop must see an error and back off, not ask again at once forever."""
    js = nc.jetstream()
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"del-{uid}", subjects.endpoints(f"pd-{uid}"))
    await bus.ensure_consumer(js, consumer)
    puller = bus.Puller(js, consumer)
    await puller.start()
    try:
        fetching = asyncio.create_task(puller.fetch(10, timeout=30))

        async def waiting() -> bool:
            return (await js.consumer_info(subjects.ENDPOINTS.name, consumer.durable)).num_waiting >= 1
        await eventually(waiting, timeout=10, what="the pull request open on the server")
        await js.delete_consumer(subjects.ENDPOINTS.name, consumer.durable)
        with pytest.raises(bus.PullError, match="409"):
            await asyncio.wait_for(fetching, 10)
    finally:
        await puller.close()
