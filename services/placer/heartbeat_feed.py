"""How heartbeats reach the HeartbeatSink: one NATS subscription whose messages skip nats-py's
per-message machinery.

For every message nats-py awaits a header parse, builds a ``Msg`` (a dataclass), queues it, and
a task takes it off the queue and awaits the subscription's coroutine.  At 10,000 heartbeats a
second (10,000 hosts) that was about half of what the placer spent on them: ~9.5 us a heartbeat
received and folded, against ~4.6 us when the payload goes straight to ``HeartbeatSink.hear``
(bench/RESULTS.md, "(b) again, issue 13, third pass").  So the client's per-message hook,
``Client._process_msg`` (what nats-py's parser calls for each MSG), is wrapped on this connection:
this subscription's payloads are handed to ``hear`` in the read loop, everything else goes on as
before.  The hook is private to nats-py: where the installed version lacks it (or
``NOOPS_PLACER_HEARTBEAT_FAST_PATH=false``), the subscription is an ordinary callback one, doing
the same at the ordinary cost.  tests/integration/placer/test_heartbeat_feed.py checks both
against a real server, so an upgrade of nats-py that moves the hook fails there, not silently.
"""
from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client as NATS

from libs import subjects
from services.placer.heartbeats import HeartbeatSink

log = logging.getLogger("noops.placer.heartbeats")

_HOOK = "_process_msg"


class Feed:
    """The heartbeat subscription; ``fast`` says whether its messages skip nats-py's queue."""

    def __init__(self, nc: NATS, sub: Any, fast: bool) -> None:
        self._nc, self._sub, self.fast = nc, sub, fast

    async def unsubscribe(self) -> None:
        if self.fast:
            # The wrapper lives on the instance: removing it restores the class's method.
            vars(self._nc).pop(_HOOK, None)
            self.fast = False
        await self._sub.unsubscribe()


async def subscribe(nc: NATS, sink: HeartbeatSink, *, fast: bool = True) -> Feed:
    # An ordinary callback subscription first: what arrives before the hook is in place (or
    # everything, without it) goes through nats-py's queue to sink.handle.
    sub = await nc.subscribe(subjects.HEARTBEAT_ALL, cb=sink.handle)
    sid = getattr(sub, "_id", None)
    original = getattr(nc, _HOOK, None)
    if not fast or sid is None or original is None or _HOOK in vars(nc):
        if fast:
            log.warning("heartbeats take nats-py's ordinary path (its per-message hook is not there)")
        return Feed(nc, sub, fast=False)

    async def process_msg(msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if msg_sid != sid:
            return await original(msg_sid, subject, reply, data, headers)
        try:
            sink.hear(subject.decode(errors="replace"), data)
        except Exception:   # in nats-py's read loop: nothing may escape, or the connection drops
            log.exception("heartbeat not folded")

    setattr(nc, _HOOK, process_msg)
    return Feed(nc, sub, fast=True)
