"""app_failures, kept by PostgreSQL where instances end (migration 0014): FAILED counts, LOST is
the last failure without counting, KILLED and other writes change nothing, and a new incarnation
of the app id starts over (real task log; the reconciler's own lose_missing as one writer)."""
from __future__ import annotations

import asyncpg

from libs import db
from tests.integration.reconciler.endedrows import EndedRows, rows  # noqa: F401 (the fixture)


async def _record(pool: asyncpg.Pool, app: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT f.failures, f.instance, f.state, f.reason FROM app_failures f "
                               "JOIN apps a ON a.id = f.app AND f.incarnation = a.created_at WHERE f.app = $1", app)


async def _set(pool: asyncpg.Pool, iid: str, state: str, reason: str = "") -> None:
    await pool.execute("UPDATE instances SET state = $2, reason = $3, updated_at = now() WHERE id = $1",
                       iid, state, reason)


async def test_failures_count_and_the_last_failure(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"af-{uid}")
    ids = [await rows.instance(a, f"{a}-{k}", "RUNNING", ago_s=0) for k in range(4)]
    await pool.execute("UPDATE instances SET healthy = false, health = 'down' WHERE id = $1", ids[0])
    await _set(pool, ids[0], "KILLED")
    assert await _record(pool, a) is None

    await _set(pool, ids[1], "FAILED", "exited with code 1")
    await _set(pool, ids[1], "FAILED", "exited with code 1")   # no change of state: not counted again
    assert tuple(await _record(pool, a)) == (1, ids[1], "FAILED", "exited with code 1")
    # The reconciler's repair: LOST is the last failure, not one more crash.
    assert await pool.fetch(db.Queries("reconciler").lose_missing, [ids[2]])
    got = await _record(pool, a)
    assert (got["failures"], got["instance"], got["state"]) == (1, ids[2], "LOST")
    assert "container gone" in got["reason"]
    await _set(pool, ids[3], "FAILED", "OOMKilled")
    assert tuple(await _record(pool, a)) == (2, ids[3], "FAILED", "OOMKilled")


async def test_a_new_incarnation_starts_over(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"afi-{uid}")
    old = await rows.instance(a, f"{a}-old", "RUNNING", ago_s=0)
    late = await rows.instance(a, f"{a}-late", "RUNNING", ago_s=0)
    await _set(pool, old, "FAILED", "crash")
    # Deleted and created again (gateway.sql create_app moves created_at on).
    await pool.execute("UPDATE apps SET created_at = now() + interval '1 second' WHERE id = $1", a)
    assert await _record(pool, a) is None   # the old incarnation's record is not this one's
    await _set(pool, late, "FAILED", "old copy ending")   # an instance of the old incarnation
    assert await _record(pool, a) is None
    fresh = f"{a}-new"
    await pool.execute("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, created_at) "
                       "VALUES ($1, $2, 1, 'h1', 1, 0.1, 32, now() + interval '2 seconds')", fresh, a)
    await _set(pool, fresh, "FAILED", "crash again")
    assert tuple(await _record(pool, a)) == (1, fresh, "FAILED", "crash again")


async def test_the_migration_runs_again_without_changing_the_record(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"afm-{uid}")
    iid = await rows.instance(a, f"{a}-0", "RUNNING", ago_s=0)
    await _set(pool, iid, "FAILED", "crash")
    sql = next(text for _, name, text in db.migration_files() if name == "0014_retention.sql")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql)
    assert tuple(await _record(pool, a)) == (1, iid, "FAILED", "crash")
