"""/v1/events: endpoint changes as Server-Sent Events, straight from core NATS.

    registry --noops.endpoints.<app>--> NATS --(core sub, one per client)--> this stream --> browser

Core NATS, not a JetStream consumer: a client that connects late gets the next change, and a
client that wants the full set reads the API; nothing durable to clean up when it leaves.  A
token limited to some apps gets only their changes (the app is the subject's last token)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from nats.aio.client import Client as NATS

from libs import subjects
from services.gateway.auth import WhoDep
from services.gateway.deps import NatsDep
from services.gateway.responses import DocumentedRoute

log = logging.getLogger("noops.gateway")
router = APIRouter(prefix="/v1/events", tags=["events"], route_class=DocumentedRoute)

# A comment line now and then makes a vanished client show up as a failed write, and keeps
# proxies from closing an idle stream.
KEEPALIVE_S = 15.0
# A client that cannot keep up loses the oldest events rather than growing our memory.
QUEUE_MAX = 1000


async def _stream(nc: NATS, sees: Callable[[str], bool]) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)

    async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        if not sees(subjects.app_of(msg.subject)):
            return
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(msg.data)

    sub = await nc.subscribe(subjects.ENDPOINTS_ALL, cb=on_msg)
    try:
        # Once the server has our SUB, tell the client: events published after this line reach it.
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)
        yield b": subscribed\n\n"
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield b": keepalive\n\n"
                continue
            # The payload is one JSON line (msgspec), so it fits a single data: field.
            yield b"event: endpoints\ndata: " + data.replace(b"\n", b"") + b"\n\n"
    finally:
        # Reached when the client goes away: Starlette cancels the response (ASGI spec < 2.4), or
        # the next write fails (>= 2.4; the keepalive bounds how long that takes).  Shielded,
        # because under a cancelled anyio scope any await here would be cancelled again.
        with anyio.CancelScope(shield=True):
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection already closed: nothing left to clean
                log.debug("unsubscribe failed", extra={"error": str(exc) or type(exc).__name__})


@router.get("")
async def events(nc: NatsDep, who: WhoDep) -> StreamingResponse:
    return StreamingResponse(_stream(nc, who.sees), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
