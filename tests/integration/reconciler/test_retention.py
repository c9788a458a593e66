"""Retention against the real task log: the newest N ended instances of each app are kept, older
ones and those past the age go with their events, live instances and instances something still
needs are never touched, batches are bounded, and a dry run removes nothing.

The session's database is shared: prune() looks at every app, so each test asserts on its own
apps only, and on bounds that hold whatever other rows there are."""
from __future__ import annotations

import asyncio

import asyncpg

from libs import db
from services.reconciler.retention import Pruned, RetentionPolicy, prune
from tests.integration.reconciler.endedrows import EndedRows, rows  # noqa: F401 (the fixture)

Q = db.Queries("retention")
HOUR = 3600.0


async def _crash_history(rows: EndedRows, app: str, ended: int, *, events: int = 3) -> list[str]:
    """``ended`` FAILED instances of ``app``, the k-th ended k minutes ago; newest first."""
    return [await rows.instance(app, f"{app}-f{k}", "FAILED", ago_s=60.0 * k, events=events)
            for k in range(1, ended + 1)]


async def test_keeps_the_newest_per_app_and_removes_the_rest_with_their_events(rows: EndedRows, pool, uid) -> None:
    a, b = await rows.app(f"ret-a-{uid}"), await rows.app(f"ret-b-{uid}")
    failed = await _crash_history(rows, a, 8)
    # Live ones, long ago created: never candidates, whatever their age.
    live = [await rows.instance(a, f"{a}-run", "RUNNING", ago_s=20 * HOUR, events=2),
            await rows.instance(a, f"{a}-pend", "PENDING", ago_s=20 * HOUR, events=1),
            await rows.instance(a, f"{a}-start", "STARTING", ago_s=20 * HOUR)]
    recent = await rows.instance(b, f"{b}-k1", "KILLED", ago_s=60, events=2)
    lost = await rows.instance(b, f"{b}-l1", "LOST", ago_s=120, events=2)
    old = await rows.instance(b, f"{b}-old", "KILLED", ago_s=2 * HOUR, events=4)  # past the age, within the count

    got = await prune(pool, Q, RetentionPolicy(keep_per_app=5, max_age_s=HOUR, batch=1000, max_batches=10))

    assert await rows.ended_ids(a) == set(failed[:5])
    assert await rows.ids(a) >= set(live)
    assert await rows.ended_ids(b) == {recent, lost}
    assert await rows.events_of(failed[5:] + [old]) == 0
    assert await rows.events_of(failed[:5]) == 15 and await rows.events_of(live) == 3
    assert got.instances >= 4 and got.events >= 13 and 1 <= got.batches <= 10 and not got.dry_run


async def test_batches_are_bounded_and_later_calls_go_on(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"ret-c-{uid}")
    await _crash_history(rows, a, 30, events=1)
    policy = RetentionPolicy(keep_per_app=2, max_age_s=0, batch=4, max_batches=3)

    first = await prune(pool, Q, policy)

    assert (first.batches, first.instances, first.more) == (3, 12, True)
    for _ in range(20):   # the rest, at most 12 a call
        if not (await prune(pool, Q, policy)).more:
            break
    assert len(await rows.ended_ids(a)) == 2


async def test_dry_run_counts_and_removes_nothing(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"ret-d-{uid}")
    await _crash_history(rows, a, 6, events=2)
    before = await rows.ended_ids(a)
    policy = RetentionPolicy(keep_per_app=2, max_age_s=HOUR, batch=1000, max_batches=10)

    got = await prune(pool, Q, policy, dry_run=True)

    assert got.dry_run and got.instances == 0 and got.batches == 0
    assert got.would_instances >= 4 and got.would_events >= 8
    assert await rows.ended_ids(a) == before
    real = await prune(pool, Q, policy)
    assert real.instances >= 4 and len(await rows.ended_ids(a)) == 2


async def test_what_something_still_needs_is_kept(rows: EndedRows, pool, uid) -> None:
    """A LOST instance of a DOWN host (the placer stops its copy when the host returns) and an
    instance still holding a pool address are kept, even past the age and the count."""
    a = await rows.app(f"ret-e-{uid}")
    down = f"rd{uid}"
    await rows.down_host(down)
    on_down = await rows.instance(a, f"{a}-lost", "LOST", ago_s=3 * HOUR, host=down)
    addressed = await rows.instance(a, f"{a}-addr", "FAILED", ago_s=3 * HOUR)
    gone = await rows.instance(a, f"{a}-gone", "FAILED", ago_s=3 * HOUR)
    address = f"198.19.251.{int(uid, 16) % 200 + 1}"
    await pool.execute("INSERT INTO ipam_addresses (address, prefix, instance, taken_at) VALUES ($1, 24, $2, now()) "
                       "ON CONFLICT (address) DO UPDATE SET instance = $2", address, addressed)
    try:
        await prune(pool, Q, RetentionPolicy(keep_per_app=1, max_age_s=HOUR, batch=1000, max_batches=10))
        assert await rows.ended_ids(a) == {on_down, addressed}
        assert gone not in await rows.ids(a)
    finally:
        await pool.execute("DELETE FROM ipam_addresses WHERE address = $1::inet", address)


async def test_an_inactive_policy_does_nothing(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"ret-f-{uid}")
    await _crash_history(rows, a, 3)
    for policy in (RetentionPolicy(max_batches=0), RetentionPolicy(keep_per_app=0, max_age_s=0)):
        assert await prune(pool, Q, policy) == Pruned()
    assert len(await rows.ended_ids(a)) == 3


async def test_a_row_another_transaction_holds_is_left_not_waited_for(rows: EndedRows, pool, uid) -> None:
    a = await rows.app(f"ret-g-{uid}")
    failed = await _crash_history(rows, a, 4, events=1)
    held = failed[-1]   # the oldest: a candidate
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM instances WHERE id = $1 FOR UPDATE", held)
        # A wait on that lock would time out here and fail the test rather than hang it.
        got = await asyncio.wait_for(
            prune(pool, Q, RetentionPolicy(keep_per_app=1, max_age_s=0, batch=1000, max_batches=2)), timeout=10)
        assert await rows.ended_ids(a) == {failed[0], held}
    assert got.instances >= 2
    await prune(pool, Q, RetentionPolicy(keep_per_app=1, max_age_s=0, batch=1000, max_batches=2))
    assert await rows.ended_ids(a) == {failed[0]}
