"""libs/jspublish.py against a real JetStream: a stored message's ack resolves its future, a
subject no stream covers and a refusal by the server carry nats-py's own errors, so the outbox
relay classifies them as before (transient / stream missing / refused)."""
from __future__ import annotations

import asyncio

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from libs import jspublish, retry
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
