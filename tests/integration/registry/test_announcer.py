"""The endpoints announcer against the real task log: marks written by several report batches
become one EndpointsChanged per app holding the complete set, read after the marks committed;
a batch not committed yet is announced by the next round, with a higher seq."""
from __future__ import annotations

from libs import endpoints, messages, outbox, subjects
from services.registry.announcer import Announcer


async def _announced(pool, app: str) -> list[messages.EndpointsChanged]:
    """The announcements of ``app`` waiting in the outbox (taken out of it)."""
    got = await pool.fetch("DELETE FROM outbox WHERE subject = $1 RETURNING id, payload", subjects.endpoints(app))
    return [messages.decode(bytes(r["payload"]), messages.EndpointsChanged) for r in sorted(got, key=lambda r: r["id"])]


async def _looks(pool, app: str) -> list[messages.DeployRequest]:
    """The placer's look requests for ``app`` waiting in the outbox (taken out of it)."""
    got = await pool.fetch("DELETE FROM outbox WHERE subject = $1 RETURNING payload", subjects.deploy(app))
    return [messages.decode(bytes(r["payload"]), messages.DeployRequest) for r in got]


async def test_marks_coalesce_and_a_later_commit_gets_a_later_announcement(pool, nc, rows, uid):
    app, quiet = f"an-{uid}", f"aq-{uid}"
    await rows.app(app, {"http": 8080})
    await rows.app(quiet, {"http": 8080})
    await rows.instance(app, f"{app}-1", "198.18.7.1")
    await rows.instance(app, f"{app}-2", "198.18.7.2")
    announcer = Announcer(pool, outbox.Relay(pool, nc.jetstream()))
    for _ in range(3):                       # three committed report batches touching the app
        async with pool.acquire() as conn, conn.transaction():
            await endpoints.mark_changed(conn, [app])
    async with pool.acquire() as open_conn:
        tx = open_conn.transaction()
        await tx.start()
        await endpoints.mark_changed(open_conn, [app])   # a batch still in flight
        await announcer.announce_once()
        first = await _announced(pool, app)
        assert [sorted(e.instance for e in ev.endpoints) for ev in first] == [[f"{app}-1", f"{app}-2"]]
        # Three marks, one round: one look for the placer (the next rolling-update step may be due).
        assert [r.app for r in await _looks(pool, app)] == [app]
        assert first[0].endpoints[0].ports == {"http": 8080}
        await rows.set_state(f"{app}-2", "KILLED")
        await tx.commit()
    await announcer.announce_once()
    second = await _announced(pool, app)
    assert [[e.instance for e in ev.endpoints] for ev in second] == [[f"{app}-1"]]
    assert second[0].seq > first[0].seq
    assert [r.app for r in await _looks(pool, app)] == [app]
    await announcer.announce_once()          # nothing marked: nothing announced, no look asked for
    assert await _announced(pool, app) == []
    assert await _announced(pool, quiet) == []
    assert await _looks(pool, app) == [] and await _looks(pool, quiet) == []


async def test_an_app_with_nothing_in_service_is_announced_empty(pool, nc, rows, uid):
    """Its last instance left service: the set subscribers replace theirs with is empty (one
    statement reads the marks, seqs and sets: an app without rows must not be lost)."""
    gone, kept = f"ae-{uid}", f"ak-{uid}"
    await rows.app(gone, {"http": 8080})
    await rows.app(kept, {"http": 8080})
    await rows.instance(gone, f"{gone}-1", "198.18.7.9")
    await rows.instance(kept, f"{kept}-1", "198.18.7.10")
    await rows.set_state(f"{gone}-1", "KILLED")
    async with pool.acquire() as conn, conn.transaction():
        await endpoints.mark_changed(conn, [gone, kept])
    assert await Announcer(pool, outbox.Relay(pool, nc.jetstream())).announce_once() == 2
    [empty], [full] = await _announced(pool, gone), await _announced(pool, kept)
    assert empty.endpoints == [] and [e.instance for e in full.endpoints] == [f"{kept}-1"]
    assert empty.seq != full.seq
