"""The in-service set of apps, as EndpointsChanged messages for the outbox.  Whoever changes
what is in service (the registry on reports, the placer when a host goes down) announces it
in the same transaction."""
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


async def announcements(conn: asyncpg.Connection, apps: Iterable[str]) -> list[tuple[str, str, messages.Msg]]:
    """One EndpointsChanged per app (complete set; ``seq`` orders them), ready for outbox.enqueue."""
    names = sorted(set(apps))
    if not names:
        return []
    eps: dict[str, list[messages.Endpoint]] = defaultdict(list)
    for r in await in_service(conn, names):
        ports = {p["name"]: p["container_port"] for p in json.loads(r["ports"] or "[]")}
        eps[r["app"]].append(messages.Endpoint(instance=r["id"], host=r["host"], ip=r["ip"], ports=ports))
    seqs = [r[0] for r in await conn.fetch(_Q.next_seqs, len(names))]
    return [(subjects.endpoints(app), f"endpoints:{app}:{seq}",
             messages.EndpointsChanged(app=app, endpoints=eps.get(app, []), seq=seq))
            for app, seq in zip(names, seqs)]
