"""Pipelined JetStream publishes with cheap acks, for the outbox relays.

What ``js.publish_async`` does -- a publish with a reply subject under one inbox subscription,
and a future per message resolved by the server's ack -- without its per-message costs: a
task for the stall semaphore (``asyncio.wait_for``), random bytes for the token, and each ack
parsed into a ``PubAck`` dataclass.  At thousands of change events a second those were most of
the registry relay's time.  A stored message's ack (``{"stream":..,"seq":..}``) resolves its
future with None; a refusal carries nats-py's own exception (``APIError.from_error``), and no
stream for the subject ``NoStreamResponseError``, so callers classify errors as before.
(nats-py's own handler calls ``APIError.from_error``, which raises rather than returns, inside
its callback: a refused publish's future never resolved there, and the relay took it for a 10 s
timeout, a transient error, instead of a refusal.)
"""
from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

_NO_RESPONDERS = "503"


class AckedPublisher:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = ""
        self._seq = itertools.count()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        # Concurrent first publishes (the hollow hosts' two pull batches in flight) start once:
        # the SUB waits for the flusher when the pending buffer is over its limit, and without
        # the lock each of them subscribed an inbox of its own (one leaked subscription each).
        # A failed start leaves no prefix: the next publish tries again.
        self._starting = asyncio.Lock()

    async def _start(self) -> None:
        async with self._starting:
            if self._prefix:
                return
            # The connection's inbox prefix: the identity's own (libs/natsauth.py) when it has one.
            prefix = f"{self.nc.new_inbox()}."
            await self.nc.subscribe(f"{prefix}*", cb=self._answered)
            self._prefix = prefix

    async def _answered(self, msg: Msg) -> None:
        fut = self._waiting.pop(msg.subject[len(self._prefix):], None)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            fut.set_exception(NoStreamResponseError())
        elif b'"error"' in msg.data:
            try:
                error = json.loads(msg.data)["error"]
            except (ValueError, KeyError, TypeError):
                fut.set_result(None)   # an ack whose payload merely mentions "error" somewhere
                return
            try:
                APIError.from_error(error)   # raises the error's own class (it returns nothing)
            except APIError as exc:
                fut.set_exception(exc)
            except (KeyError, TypeError):   # not an API error object after all
                fut.set_exception(APIError(description=str(error)[:200]))
        else:
            fut.set_result(None)

    async def publish(self, subject: str, payload: bytes, *, msg_id: str) -> asyncio.Future[None]:
        """Publish (buffered, like any NATS publish); the future resolves with the server's ack."""
        if not self._prefix:
            await self._start()
        token = str(next(self._seq))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token, headers={"Nats-Msg-Id": msg_id})
        except BaseException:
            self._waiting.pop(token, None)
            raise
        return fut

    def forget(self, futures: Iterable[asyncio.Future[None]]) -> None:
        """Stop waiting for these (the caller gave up on them, or they were cancelled): their
        tokens are dropped.  Answered ones are gone already."""
        dead = {id(f) for f in futures if not f.done() or f.cancelled()}
        if dead and self._waiting:
            for token in [t for t, f in self._waiting.items() if id(f) in dead]:
                del self._waiting[token]

    @property
    def waiting(self) -> int:
        return len(self._waiting)
