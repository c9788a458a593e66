"""/v2/events: Marathon's event bus as Server-Sent Events, fed by the streams /v1/events replays.

    task log --(outbox)--> NOOPS_EVENTS    (noops.instance.<app>, noops.deployment.<app>) --+
    registry ------------> NOOPS_ENDPOINTS (noops.endpoints.<app>) --------------------------+
        --(ephemeral consumers, from now on)--> "look at <app> again"
        --> re-read the app (live tasks, latest deployment) --> marathon.events.diff --> SSE frames

Level-triggered: a message is only a key (the app), so a burst of changes of one app costs one
re-read, and the frames say what the task log says, not what a message claimed; the same changes
/v1/events sends, so Marathon tools and /v1 subscribers see the same truth.  Every instance
transition (placed, starting, running, ended, health) and every deployment state is a message on
NOOPS_EVENTS, so the stream looks again at each.  Apps with something in flight (a deployment, a
task not running yet) are looked at again with each heartbeat too, and so are apps whose look
failed because the task log was away (the stream stays up).
``event_type`` (repeatable) keeps only those types; none: all.  A token limited to some apps
hears only theirs."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Annotated

import anyio
import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from nats.aio.client import Client as NATS

from libs import db, subjects
from services.gateway.auth import WhoDep
from services.gateway.deps import NatsDep, PoolDep, QueriesDep
from services.gateway.marathon import events, ids, reads, shapes
from services.gateway.marathon.errors import MarathonRoute
from services.gateway.tail import Tail, span, stop

log = logging.getLogger("noops.gateway")
router = APIRouter(tags=["marathon"], route_class=MarathonRoute, include_in_schema=False)

# Marathon's: a bare CRLF every 10 s (marathon-lb gives up after 300 s without a byte).
HEARTBEAT_S = 10.0
_FETCH_S = 5.0
_INACTIVE_S = 60.0


def _now() -> str:
    return ids.timestamp(datetime.now(timezone.utc)) or ""


async def _look(pool: asyncpg.Pool, q: db.Queries, app: str) -> events.AppView:
    async with pool.acquire() as conn:
        rows = await conn.fetch(q.marathon_apps, app)
        tasks = await reads.tasks(conn, q, lambda _: True, app)
        dep = await conn.fetchrow(q.latest_deployment, app)
    deployment = None if dep is None else events.Deployment(
        ids.deployment_id(app, dep["to_version"]), dep["state"], ids.timestamp(dep["version_at"]) or "",
        dep["from_version"])
    return events.AppView(app, bool(rows), {t["id"]: events.task_of(t) for t in tasks}, deployment,
                          rows[0]["version"] if rows else 0, (ids.timestamp(rows[0]["version_at"]) or "") if rows else "")


async def _stream(nc: NATS, pool: asyncpg.Pool, q: db.Queries, sees: Callable[[str], bool],
                  wanted: Callable[[str], bool], remote: str, *, heartbeat_s: float = HEARTBEAT_S
                  ) -> AsyncIterator[bytes]:
    # Keys, not payloads: each app waits at most once, so the queue is bounded by the apps.
    queue: asyncio.Queue[str] = asyncio.Queue()
    waiting: set[str] = set()
    views: dict[str, events.AppView] = {}
    # Apps whose look failed (the task log was away): looked at again with the next heartbeat.
    later: set[str] = set()

    def again(app: str) -> None:
        if app not in waiting:
            waiting.add(app)
            queue.put_nowait(app)

    failed: list[BaseException] = []

    async def keys(tail: Tail) -> None:
        try:
            while not stopping.is_set():
                for m in await tail.fetch(_FETCH_S):
                    # Host events name a host, not an app: the instances it lost have their own.
                    if subjects.event_kind(m.subject) != "host" and sees(app := subjects.app_of(m.subject)):
                        again(app)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed.append(exc)

    async def look(app: str) -> list[bytes]:
        waiting.discard(app)
        before = views.get(app)
        try:
            after = await _look(pool, q, app)
            gone = [t for t in (before.tasks if before else {}) if t not in after.tasks]
            rows = await pool.fetch(q.instance_states, gone) if gone else []
            ended = {r["id"]: shapes.STATE[r["state"]] for r in rows}
            reasons = {r["id"]: r["reason"] for r in rows}
        except (*db.TRANSIENT, db.TaskLogUnavailable) as exc:
            log.warning("event stream: task log unavailable", extra={"app": app, "error": str(exc) or type(exc).__name__})
            later.add(app)
            return []
        if after.live:
            views[app] = after
        else:
            views.pop(app, None)
        return [events.frame(t, p) for t, p in events.diff(before, after, ended=ended, now=_now(), reasons=reasons)
                if wanted(t)]

    js = nc.jetstream()
    # Live from now: a subscriber reads the apps when it attaches, as Marathon's do.
    tails = [Tail(js, s.name, (await span(js, s.name)).last + 1, batch=64, inactive_s=_INACTIVE_S)
             for s in (subjects.EVENTS, subjects.ENDPOINTS)]
    stopping = asyncio.Event()
    readers: list[asyncio.Task] = []
    try:
        for t in tails:
            await t.open()
        readers = [asyncio.create_task(keys(t)) for t in tails]
        kind, payload = events.attached(remote, _now())
        # Always a first byte: the client knows it is subscribed (and proxies see traffic).
        yield events.frame(kind, payload) if wanted(kind) else events.HEARTBEAT
        while True:
            try:
                app = await asyncio.wait_for(queue.get(), heartbeat_s)
            except asyncio.TimeoutError:
                yield events.HEARTBEAT
                if failed:   # the streams are away: end, the client reconnects (marathon-lb does)
                    log.warning("marathon event stream ended", extra={"error": str(failed[0]) or type(failed[0]).__name__})
                    return
                for a in [a for a, v in views.items() if not v.settled] + sorted(later):
                    again(a)
                later.clear()
                continue
            for chunk in await look(app):
                yield chunk
    finally:
        with anyio.CancelScope(shield=True):   # see routes/events.py: the client went away
            await stop(readers, stopping, tails)


@router.get("/v2/events")
async def marathon_events(request: Request, nc: NatsDep, pool: PoolDep, q: QueriesDep, who: WhoDep,
                          event_type: Annotated[list[str], Query()] = []) -> StreamingResponse:
    """``event_type`` may name types noops never sends: the stream then carries the others asked for."""
    wanted = (lambda t: True) if not event_type else set(event_type).__contains__
    remote = request.client.host if request.client else ""
    return StreamingResponse(_stream(nc, pool, q, who.sees, wanted, remote), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
