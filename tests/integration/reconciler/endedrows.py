"""Task-log rows for retention tests: apps and instances that ended (or not) a given time ago, with
events, removed again at teardown.  Ages stay under a day and apps under 50 ended instances, so
a reconciler with the default retention running in the same session never removes them."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest_asyncio


@dataclass
class EndedRows:
    pool: asyncpg.Pool
    apps: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    async def app(self, app: str) -> str:
        await self.pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, '{}'::jsonb, 0)", app)
        self.apps.append(app)
        return app

    async def instance(self, app: str, iid: str, state: str, *, ago_s: float, events: int = 0,
                       host: str = "h1", reason: str = "") -> str:
        """An instance created and last changed (ended, when its state is terminal) ``ago_s`` ago."""
        await self.pool.execute(
            "INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, reason, created_at, updated_at) "
            "VALUES ($1, $2, 1, $3, 1, 0.1, 32, $4, $5, now() - make_interval(secs => $6), "
            "now() - make_interval(secs => $6))", iid, app, host, state, reason, ago_s)
        if events:
            await self.pool.execute("INSERT INTO instance_events (instance, state, source) "
                                    "SELECT $1, $2, 'test' FROM generate_series(1, $3)", iid, state, events)
        return iid

    async def down_host(self, host: str) -> None:
        await self.pool.execute("INSERT INTO hosts (id, cpus, mem_mb, last_seen, state) "
                                "VALUES ($1, 1, 1024, now() - interval '1 hour', 'DOWN')", host)
        self.hosts.append(host)

    async def ended_ids(self, app: str) -> set[str]:
        return {r["id"] for r in await self.pool.fetch(
            "SELECT id FROM instances WHERE app = $1 AND state IN ('FAILED', 'KILLED', 'LOST')", app)}

    async def ids(self, app: str) -> set[str]:
        return {r["id"] for r in await self.pool.fetch("SELECT id FROM instances WHERE app = $1", app)}

    async def events_of(self, ids: list[str]) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM instance_events WHERE instance = ANY($1)", ids)

    async def cleanup(self) -> None:
        ids = [r["id"] for r in await self.pool.fetch("SELECT id FROM instances WHERE app = ANY($1)", self.apps)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE ipam_addresses SET instance = NULL, taken_at = NULL WHERE instance = ANY($1)", ids)
            await conn.execute("DELETE FROM instance_events WHERE instance = ANY($1)", ids)
            await conn.execute("DELETE FROM instances WHERE app = ANY($1)", self.apps)
            await conn.execute("DELETE FROM app_failures WHERE app = ANY($1)", self.apps)
            await conn.execute("DELETE FROM apps WHERE id = ANY($1)", self.apps)
            await conn.execute("DELETE FROM hosts WHERE id = ANY($1)", self.hosts)


@pytest_asyncio.fixture
async def rows(pool: asyncpg.Pool) -> AsyncIterator[EndedRows]:
    """Import it into a test module to use it (this directory has no conftest of its own)."""
    r = EndedRows(pool)
    try:
        yield r
    finally:
        await r.cleanup()
