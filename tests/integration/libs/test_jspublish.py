"""libs/jspublish.py against a real JetStream: a stored message's ack resolves its future, a
subject no stream covers and a refusal by the server carry nats-py's own errors, so the outbox
relay classifies them as before (transient / stream missing / refused)."""
from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from libs import jspublish, natsauth, retry
from libs.outbox import _stream_missing


async def test_acks_resolve_and_errors_are_nats_pys_own(nc, uid):
    js = nc.jetstream()
    stream, subject = f"JSPUB_{uid}", f"jspub.{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"], max_msg_size=64,
                                     duplicate_window=60.0))
    pub = jspublish.AckedPublisher(nc)
    try:
        futures = [await pub.publish(f"{subject}.ok", b"x", msg_id=f"m{k}") for k in range(50)]
        assert await asyncio.wait_for(asyncio.gather(*futures), 10) == [None] * 50
        # The same msg id again: a duplicate is acked too (the server drops it).
        assert await asyncio.wait_for(await pub.publish(f"{subject}.ok", b"x", msg_id="m0"), 10) is None
        assert (await js.stream_info(stream)).state.messages == 50

        # No stream for the subject: the server answers "no responders".
        with pytest.raises(NoStreamResponseError) as nostream:
            await asyncio.wait_for(await pub.publish(f"nostream.{uid}", b"x", msg_id="n1"), 10)
        assert _stream_missing(nostream.value)

        # Refused: larger than the stream's max_msg_size.
        with pytest.raises(APIError) as refused:
            await asyncio.wait_for(await pub.publish(f"{subject}.big", b"y" * 200, msg_id="b1"), 10)
        assert not retry.is_transient(refused.value) and not _stream_missing(refused.value)
        assert pub.waiting == 0
    finally:
        await js.delete_stream(stream)


async def test_futures_given_up_on_are_forgotten(nc, uid):
    pub = jspublish.AckedPublisher(nc)
    # A publish on a subject no stream covers is answered at once; cancel before looking.
    futures = [await pub.publish(f"nostream.{uid}.{k}", b"x", msg_id=f"f{k}") for k in range(3)]
    for f in futures:
        f.cancel()
    pub.forget(futures)
    assert pub.waiting == 0


async def test_concurrent_first_publishes_share_one_inbox_subscription(cluster_cfg, uid):
    # The hollow hosts publish from two pull batches in flight: their first publishes start the
    # publisher together.  The inbox SUB yields to the loop only when the client's pending buffer
    # is over its limit (a burst of publishes ahead of it: the command waits for the flusher); a
    # one-byte limit makes every command wait so.  A client of its own, so the session client's
    # subscriptions don't count.
    user, password = cluster_cfg.nats_credentials("admin").values()
    client = await nats.connect(servers=[cluster_cfg.nats_url], name=f"tests-jspub-{uid}", pending_size=1,
                                user=user, password=password, inbox_prefix=natsauth.inbox_prefix(user))
    js = client.jetstream()
    stream, subject = f"JSPUBC_{uid}", f"jspubc.{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
    try:
        before = len(client._subs)
        pub = jspublish.AckedPublisher(client)
        futures = await asyncio.wait_for(asyncio.gather(
            *(pub.publish(f"{subject}.k{k}", b"x", msg_id=f"c{k}") for k in range(20))), 10)
        assert len(client._subs) - before == 1
        assert await asyncio.wait_for(asyncio.gather(*futures), 10) == [None] * 20
        assert pub.waiting == 0
        assert (await js.stream_info(stream)).state.messages == 20
    finally:
        await js.delete_stream(stream)
        await client.drain()
