"""Leader election for running two (or more) of a service (the placer, the reconciler): a
PostgreSQL session-level advisory lock held on a dedicated connection.  If the leader dies (even by SIGKILL) its connection closes and
PostgreSQL releases the lock; a standby polling every ``poll_s`` takes it within about a second.

On taking the lock the new leader increments the fencing token in the service's fence table
(``placer_fence``, ``reconciler_fence``: the ``fence_take`` query of its queries); every commit
checks it, so a leader that lost its lock without noticing (a long pause, a partition) can no
longer write."""
from __future__ import annotations

import asyncio
import logging

import asyncpg

from libs import db
from libs.db import Queries

log = logging.getLogger("noops.leader")

# One advisory lock per service that elects a leader; the keys spell the names in ASCII.
LOCK_KEYS = {"placer": 0x706C61636572, "reconciler": 0x7265636F6E63}


class LostLeadership(RuntimeError):
    pass


class Leadership:
    def __init__(self, dsn: str, queries: Queries, holder: str, *, service: str = "placer", poll_s: float = 0.5,
                 retry_max_s: float = 5.0) -> None:
        self.dsn, self.q, self.holder, self.poll_s, self.retry_max_s = dsn, queries, holder, poll_s, retry_max_s
        self.service, self.lock_key = service, LOCK_KEYS[service]
        self._conn: asyncpg.Connection | None = None

    async def acquire(self) -> int:
        """Wait until this placer holds the lock; return its new fencing token."""
        announced = False
        while True:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn)
                if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.lock_key):
                    token = await self._conn.fetchval(self.q.fence_take, self.holder)
                    log.info("became leader", extra={"service": self.service, "fence": token, "holder": self.holder})
                    return token
                if not announced:
                    log.info(f"standing by: another {self.service} leads")
                    announced = True
            except db.TRANSIENT as exc:
                log.warning("leader election: PostgreSQL unavailable", extra={"error": str(exc) or type(exc).__name__})
                await self.release()
            await asyncio.sleep(self.poll_s)

    async def watch(self, interval_s: float = 1.0) -> None:
        """Return (raising LostLeadership) when the lock's connection is gone."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                assert self._conn is not None
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), timeout=2 * interval_s)
            # db.TRANSIENT covers a lock connection asyncpg can no longer use (InternalClientError,
            # libs/retry.py): it crashed the placer in a database-outage test before it did.
            except (*db.TRANSIENT, AssertionError) as exc:
                await self.release()
                raise LostLeadership(str(exc) or type(exc).__name__) from None

    async def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:  # noqa: BLE001 - closing a broken connection
                conn.terminate()
