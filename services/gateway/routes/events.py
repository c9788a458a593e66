"""/v1/events: deployment, instance, host and endpoint changes as Server-Sent Events, replayed
from JetStream (docs/events.md is the contract).

    task log --(outbox, migration 0015)--> NOOPS_EVENTS    --(ephemeral pull consumer)--+
    registry --noops.endpoints.<app>-->    NOOPS_ENDPOINTS --(ephemeral pull consumer)--+--> frames
                                                                    (changes.py: ids, filters)

Each client costs two ephemeral consumers (one if it asked for endpoints only, or for no
endpoints), deleted when it leaves.  Memory is bounded per client: the consumers are pulled one
batch at a time, and a reader waits (``QUEUED`` batches at most) until the client has taken what
came before: a slow client is not buffered, it lags behind in the stream.  If it lags so far
that the stream dropped what it had not read yet (the stream's limits), it gets ``event: reset``
and continues from what is kept; if it stops reading for ``INACTIVE_S`` the server drops its
consumers, and its stream ends with a final comment frame: it reconnects with its last id."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from nats.js import JetStreamContext

from libs import messages, subjects
from services.gateway import changes
from services.gateway.auth import WhoDep
from services.gateway.deps import NatsDep
from services.gateway.errors import ApiError
from services.gateway.responses import DocumentedRoute
from services.gateway.tail import Tail, span, stop

log = logging.getLogger("noops.gateway")
router = APIRouter(prefix="/v1/events", tags=["events"], route_class=DocumentedRoute)

# A comment line now and then makes a vanished client show up as a failed write, and keeps
# proxies from closing an idle stream.
KEEPALIVE_S = 15.0
FETCH_BATCH = 16          # messages a pull asks for (an events message holds up to 64 changes)
QUEUED = 2                # batches read ahead of the client, per client
INACTIVE_S = 60.0         # the server drops a consumer nobody pulled from for this long
_FETCH_S = 5.0


async def _read(name: str, tail: Tail, queue: asyncio.Queue, stopping: asyncio.Event) -> None:
    try:
        while not stopping.is_set():
            msgs = await tail.fetch(_FETCH_S)
            if msgs:
                await queue.put((name, msgs))   # waits while the client is behind
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put((name, exc))


def _frames(name: str, msgs: list, cursor: changes.Cursor, expected: dict[str, int], wanted: changes.Wanted
            ) -> tuple[list[bytes], changes.Cursor]:
    out: list[bytes] = []
    for m in msgs:
        seq = int(m.metadata.sequence.stream)
        if seq > expected[name]:
            # The consumer is unfiltered: a gap is messages the stream dropped before we read them.
            cursor = (changes.Cursor(seq, 0, cursor.endpoints) if name == "events"
                      else changes.Cursor(cursor.events, cursor.index, seq))
            out.append(changes.reset_frame(cursor, "events were dropped before this client read them"))
        expected[name] = seq + 1
        if name == "endpoints":
            f, cursor = changes.endpoints_frame(subjects.app_of(m.subject), seq, m.data, cursor, wanted)
            if f is not None:
                out.append(f)
            continue
        try:
            got, cursor = changes.change_frames(subjects.event_kind(m.subject), seq, m.data, cursor, wanted)
        except (messages.DecodeError, ValueError) as exc:
            log.warning("skipped an unreadable change event", extra={"subject": m.subject, "seq": seq,
                                                                     "error": str(exc)})
            cursor = changes.Cursor(seq + 1, 0, cursor.endpoints)
            continue
        out += got
    return out, cursor


async def _stream(js: JetStreamContext, wanted: changes.Wanted, asked: str | None, *,
                  keepalive_s: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
    begin = changes.start(asked, await span(js, subjects.EVENTS.name), await span(js, subjects.ENDPOINTS.name))
    cursor = begin.cursor
    tails: dict[str, Tail] = {}
    if wanted.changes:
        tails["events"] = Tail(js, subjects.EVENTS.name, cursor.events, batch=FETCH_BATCH, inactive_s=INACTIVE_S)
    if "endpoints" in wanted.types:
        tails["endpoints"] = Tail(js, subjects.ENDPOINTS.name, cursor.endpoints, batch=FETCH_BATCH,
                                  inactive_s=INACTIVE_S)
    queue: asyncio.Queue = asyncio.Queue(QUEUED)
    readers: list[asyncio.Task] = []
    stopping = asyncio.Event()
    try:
        for t in tails.values():
            await t.open()
        readers = [asyncio.create_task(_read(name, t, queue, stopping)) for name, t in tails.items()]
        # The consumers exist: whatever is published from now on reaches this client.
        yield b": subscribed\n\n"
        if begin.reset:
            yield changes.reset_frame(cursor, begin.reset)
        expected = {"events": cursor.events, "endpoints": cursor.endpoints}
        while True:
            try:
                name, got = await asyncio.wait_for(queue.get(), keepalive_s)
            except asyncio.TimeoutError:
                yield b": keepalive\n\n"
                continue
            if isinstance(got, Exception):
                log.warning("event stream ended", extra={"stream": name, "error": str(got) or type(got).__name__})
                yield b": stream ended; reconnect with the last event id\n\n"
                return
            frames, cursor = _frames(name, got, cursor, expected, wanted)
            if frames:
                yield b"".join(frames)
    finally:
        # Reached when the client goes away (see marathon_events.py); shielded, as any await
        # under a cancelled anyio scope would be cancelled again.
        with anyio.CancelScope(shield=True):
            await stop(readers, stopping, tails.values())


@router.get("")
async def events(nc: NatsDep, who: WhoDep, type: Annotated[list[str], Query()] = [],
                 app: Annotated[list[str], Query()] = [], since: str | None = None,
                 last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """``type``: deployment, instance, host, endpoints (comma-separated or repeated; none: all).
    ``app``: only these apps (repeated; none: every app the token sees).  ``Last-Event-ID`` (or
    ``since``): replay what followed that id, then live; an id no longer kept: ``event: reset``."""
    try:
        types = changes.parse_types(type)
    except ValueError as exc:
        raise ApiError(422, str(exc), [{"field": "query.type", "reason": str(exc)}]) from None
    wanted = changes.Wanted(types, frozenset(app), who.sees)
    return StreamingResponse(_stream(nc.jetstream(), wanted, last_event_id or since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
