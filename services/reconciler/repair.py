"""The one repair the reconciler makes so far: an instance the task log says is RUNNING but whose
host, asked in two rounds in a row, runs no container for it (removed behind hostd's back, or
gone while the platform was down) is marked LOST — announced to the endpoint consumers and handed
to the placer for a replacement, in one transaction.  Two rounds, because one inventory can be
taken just before the container it would list was started."""
from __future__ import annotations

import logging
import uuid

import asyncpg
from prometheus_client import Counter

from libs import endpoints, ipam, messages, outbox, subjects
from libs.db import Queries
from services.reconciler.diff import MISSING, Drift

log = logging.getLogger("noops.reconciler.repair")

REPAIRED = Counter("noops_reconciler_repairs_total", "Instances marked LOST because their container was gone")


class MissingRepair:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, relay: outbox.Relay) -> None:
        self.pool, self.q, self.relay = pool, queries, relay
        self._suspects: set[str] = set()

    async def apply(self, drift: tuple[Drift, ...]) -> int:
        missing = {d.instance for d in drift if d.kind == MISSING}
        confirmed, self._suspects = sorted(missing & self._suspects), missing - self._suspects
        if not confirmed:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self.q.lose_missing, confirmed)
            if not rows:
                return 0
            await conn.execute(self.q.insert_events, [r["id"] for r in rows])
            await ipam.release(conn, [r["id"] for r in rows])
            apps = {r["app"] for r in rows}
            out = await endpoints.announcements(conn, apps)
            out += [(subjects.deploy(a), f"deploy:{a}:{uuid.uuid4().hex}",
                     messages.DeployRequest(app=a, reason="container gone"))
                    for a in sorted({r["app"] for r in rows if r["desired"] == "RUNNING"})]
            await outbox.enqueue(conn, out)
        self.relay.kick()
        REPAIRED.inc(len(rows))
        log.warning("instances lost: containers gone", extra={"instances": [r["id"] for r in rows]})
        return len(rows)
