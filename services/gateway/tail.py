"""Reading a stream from a sequence on, for one SSE client: an ephemeral pull consumer (no
durable state: deleted when the client leaves, and by the server after ``inactive_s`` without a
pull if the gateway died), unfiltered and without acks (AckPolicy none), read one bounded batch at
a time.  Unfiltered, so the stream sequences it delivers are consecutive: a gap means messages
were dropped (the stream's limits) while the client lagged."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.gateway import changes

log = logging.getLogger("noops.gateway")


async def span(js: JetStreamContext, stream: str) -> changes.StreamSpan:
    state = (await js.stream_info(stream)).state
    return changes.StreamSpan(state.first_seq, state.last_seq)


class Tail:
    def __init__(self, js: JetStreamContext, stream: str, start_seq: int, *, batch: int, inactive_s: float) -> None:
        self.js, self.stream, self.start_seq = js, stream, max(start_seq, 1)
        self.batch, self.inactive_s = batch, inactive_s
        self.name = ""
        self._sub: JetStreamContext.PullSubscription | None = None

    async def open(self) -> None:
        info = await self.js.add_consumer(self.stream, ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.start_seq,
            inactive_threshold=self.inactive_s, mem_storage=True))
        self.name = info.name
        self._sub = await self.js.pull_subscribe_bind(durable=self.name, stream=self.stream)

    async def fetch(self, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; [] when none came within ``timeout``."""
        assert self._sub is not None
        try:
            return await self._sub.fetch(self.batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return []

    async def close(self) -> None:
        # Shielded: reached when the client went away, under a cancelled scope.
        with anyio.CancelScope(shield=True):
            if self._sub is not None:
                with contextlib.suppress(Exception):
                    await self._sub.unsubscribe()
            if self.name:
                try:
                    await self.js.delete_consumer(self.stream, self.name)
                except Exception as exc:   # NATS away: the server drops it after inactive_s
                    log.debug("deleting an event consumer failed", extra={"consumer": self.name,
                                                                         "error": str(exc) or type(exc).__name__})


async def stop(readers: list[asyncio.Task], stopping: asyncio.Event, tails: Iterable[Tail]) -> None:
    """End the tasks reading ``tails`` (they loop while ``stopping`` is not set), then the tails."""
    stopping.set()
    for r in readers:
        r.cancel()
    # Bounded: a pull cancelled at the wrong moment may swallow the cancellation (nats-py); the
    # reader then sees ``stopping``, or is cancelled again below, once its subscription is gone.
    _, pending = await asyncio.wait(readers, timeout=1.0) if readers else (set(), set())
    for t in tails:
        with contextlib.suppress(Exception):
            await t.close()
    for r in pending:
        r.cancel()
