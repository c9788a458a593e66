"""The in-service set of apps, as EndpointsChanged messages for the outbox.  Whoever changes
what is in service either announces it in the same transaction (the placer when a host goes
down, the reconciler) or, on the hot path, only marks the app changed in the same transaction
(``mark_changed``, the registry's report batches) and lets ``announce_changed`` announce every
marked app once, after the fact: N batches touching a big app then cost one read of its set,
not N.  Either way the mark or the message commits with the change, so a crash loses nothing."""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

import asyncpg

from libs import messages, subjects
from libs.db import Queries

_Q = Queries("endpoints")  # read-only text loaded once; no connection or state at import


async def in_service(conn: asyncpg.Connection, apps: list[str] | None) -> list[asyncpg.Record]:
    """Rows (app, id, host, ip, version, ports) of the in-service instances of ``apps`` (None: all)."""
    return await conn.fetch(_Q.in_service, apps)


async def in_service_of(conn: asyncpg.Connection, instances: list[str]) -> list[asyncpg.Record]:
    """Rows like ``in_service``'s of those of ``instances`` that are in service now."""
    return await conn.fetch(_Q.in_service_instances, instances)


def ports_of(text: str | None, cache: dict[str, dict[str, int]]) -> dict[str, int]:
    """Port name -> container port from an in_service row's ``ports`` text.  An app's instances
    share that text: each distinct one is parsed once per ``cache`` (one read of the sets)."""
    text = text or "[]"
    ports = cache.get(text)
    if ports is None:
        ports = cache[text] = {p["name"]: int(p["container_port"]) for p in json.loads(text)}
    return ports


def _announcements(rows: Iterable[asyncpg.Record], seqs: dict[str, int]) -> list[tuple[str, str, messages.Msg]]:
    """One EndpointsChanged per app of ``seqs`` from in-service rows (app, id, host, ip, ports)."""
    eps: dict[str, list[messages.Endpoint]] = defaultdict(list)
    parsed: dict[str, dict[str, int]] = {}
    for r in rows:
        eps[r["app"]].append(messages.Endpoint(instance=r["id"], host=r["host"], ip=r["ip"],
                                               ports=ports_of(r["ports"], parsed)))
    return [(subjects.endpoints(app), f"endpoints:{app}:{seq}",
             messages.EndpointsChanged(app=app, endpoints=eps.get(app, []), seq=seq))
            for app, seq in sorted(seqs.items())]


async def announcements(conn: asyncpg.Connection, apps: Iterable[str]) -> list[tuple[str, str, messages.Msg]]:
    """One EndpointsChanged per app (complete set; ``seq`` orders them), ready for outbox.enqueue.
    Call inside a transaction: announcements take turns (``announce_lock``) until it commits."""
    names = sorted(set(apps))
    if not names:
        return []
    await conn.execute(_Q.announce_lock)
    rows = await in_service(conn, names)
    # Taken after reading, under the lock: a higher seq never carries an older set.
    seqs = [r[0] for r in await conn.fetch(_Q.next_seqs, len(names))]
    return _announcements(rows, dict(zip(names, seqs)))


async def mark_changed(conn: asyncpg.Connection, apps: Iterable[str]) -> None:
    """In the caller's transaction: the in-service set of ``apps`` changed; ``announce_changed``
    announces it once that transaction has committed."""
    names = sorted(set(apps))
    if names:
        await conn.execute(_Q.mark_changed, names)


async def announce_changed(conn: asyncpg.Connection) -> list[tuple[str, str, messages.Msg]]:
    """In the caller's transaction: take every committed mark and return one EndpointsChanged per
    marked app (read now, so it holds every change marked so far), ready for outbox.enqueue.
    Three round trips: the lock (before taking: a second announcer waits, then sees new marks
    only), the marks with their seqs, the sets (it used to be five)."""
    await conn.execute(_Q.announce_lock)
    seqs = {r["app"]: r["seq"] for r in await conn.fetch(_Q.take_changed)}
    if not seqs:
        return []
    return _announcements(await in_service(conn, sorted(seqs)), seqs)
