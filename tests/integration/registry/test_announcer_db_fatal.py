"""The endpoints announcer when PostgreSQL ends its pooled connection's session (the FATAL 57P01
of pg_terminate_backend, as of a stopping server) and the close has not been read yet
(tests/support/holdclose.py): the round meets InternalClientError, backs off and tries again on
a new connection (the pool dropped the broken one), and announces.  (The loop ended on it in a
database-outage test, restarted by its supervisor.)"""
from __future__ import annotations

import asyncio
import logging
from libs import db, endpoints, messages, outbox, retry, subjects
from services.registry.announcer import Announcer
from tests.support.holdclose import hold_close
from tests.support.wait import eventually


def _broken_rounds(caplog) -> int:
    return sum("another operation" in getattr(r, "error", "") for r in caplog.records
               if r.getMessage().startswith("announcing endpoints failed"))


async def test_announcer_carries_on_past_a_connection_asyncpg_can_no_longer_use(pool, nc, rows, uid, cluster_cfg, caplog):
    caplog.set_level(logging.WARNING, logger="noops.registry")   # its warnings carry the error
    app = f"af-{uid}"
    await rows.app(app, {"http": 8080})
    await rows.instance(app, f"{app}-1", "198.18.7.11")
    async with hold_close(cluster_cfg.db_dsn) as proxy:
        through = await db.connect(proxy.dsn(cluster_cfg.db_dsn), min_size=1, max_size=1)
        # No slow poll: rounds only when kicked, so the session ends while the connection is idle.
        announcer = Announcer(through, outbox.Relay(through, nc.jetstream()), poll_s=3600,
                              policy=retry.Policy(base_s=0.02, cap_s=0.05))
        loop = asyncio.create_task(announcer.run())
        try:
            await proxy.end_session(pool, await through.fetchval("SELECT pg_backend_pid()"))
            async with pool.acquire() as conn, conn.transaction():
                await endpoints.mark_changed(conn, [app])
            announcer.kick()
            await eventually(lambda: loop.done() or _broken_rounds(caplog) >= 1, timeout=10,
                             what="a round meeting the broken connection")
            assert not loop.done(), loop.exception()

            async def announced() -> list[bytes]:
                return [r["payload"] for r in await pool.fetch("SELECT payload FROM outbox WHERE subject = $1",
                                                               subjects.endpoints(app))]
            # The next round, while the close is still held: asyncpg aborted the broken
            # connection, and the pool connected anew.
            got = await eventually(announced, timeout=10, what="the next round announcing")
            assert proxy.hold
            assert [e.instance for e in messages.decode(bytes(got[0]), messages.EndpointsChanged).endpoints] == [f"{app}-1"]
            assert not loop.done()
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            proxy.release()
            await through.close()
