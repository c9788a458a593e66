"""A pooled connection whose session PostgreSQL ended (FATAL 57P01, as when it stops) while it
sat idle, its close not yet read (tests/support/holdclose.py): the statement that meets it fails
with an error libs/retry.py calls transient, and the pool does not hand that connection out
again -- asyncpg aborts it, the pool's release terminates it and the next acquire connects anew,
all while the close is still held."""
from __future__ import annotations

import asyncio

import asyncpg

from libs import db, retry
from tests.support.holdclose import hold_close


async def test_the_error_is_transient_and_the_broken_connection_is_not_reused(pool, cluster_cfg):
    async with hold_close(cluster_cfg.db_dsn) as proxy:
        through = await db.connect(proxy.dsn(cluster_cfg.db_dsn), min_size=1, max_size=1)
        try:
            before = await through.fetchval("SELECT pg_backend_pid()")
            await proxy.end_session(pool, before)
            try:
                await asyncio.wait_for(through.fetchval("SELECT pg_backend_pid()"), 5)
                raise AssertionError("a statement on the ended session succeeded")
            except asyncpg.InternalClientError as exc:
                assert "another operation" in str(exc)
                assert retry.is_transient(exc)
            assert proxy.hold                     # the old connection's close has not been read
            after = await asyncio.wait_for(through.fetchval("SELECT pg_backend_pid()"), 5)
            assert after != before
        finally:
            proxy.release()
            await through.close()
