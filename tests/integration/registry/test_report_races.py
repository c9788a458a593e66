"""A report batch is judged against its instances as read, unlocked, and written only where they
are still as read (records.py, record_batch): a writer that changes an instance in between wins,
and the batch is judged again, locked, against what that writer left.  Two batches in flight at
once (the registry handles two) never write over each other either."""
from __future__ import annotations

import asyncio
import time

import asyncpg
from nats.aio.msg import Msg

from libs import bus, db, messages, natsauth, outbox, subjects
from services.registry.announcer import Announcer
from services.registry.judge import Row
from services.registry.records import MOVED, Records
from tests.integration.registry.taskrows import TaskRows
from tests.support.wait import eventually


def running(iid: str, app: str, ip: str) -> Msg:
    r = messages.IpReport(instance=iid, app=app, host="h1", epoch=1, state="RUNNING", container_id="c1",
                          ip=ip, at=time.time())
    return Msg(_client=None, subject=subjects.report("h1"), data=messages.encode(r))  # type: ignore[arg-type]


async def blocked_on(pool: asyncpg.Pool, holder_pid: int) -> None:
    """Until some backend waits for a lock the holder's transaction holds."""
    await eventually(lambda: pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                                           holder_pid),
                     timeout=10, interval=0.01, what="the report batch waiting for the other writer's row lock")


async def test_a_writer_between_the_read_and_the_write_wins(pool: asyncpg.Pool, nc, rows: TaskRows,
                                                            uid: str) -> None:
    app, iid = f"rr-{uid}", f"rr-{uid}-1"
    await rows.app(app, {"http": 8080})
    await rows.instance(app, iid, "198.18.100.9", state="STARTING")
    await pool.execute("UPDATE instances SET container_id = 'c1' WHERE id = $1", iid)
    relay = outbox.Relay(pool, nc.jetstream(), subjects=natsauth.relay_subjects("registry"))
    records = Records(pool, db.Queries("registry"), relay, Announcer(pool, relay))
    before = MOVED._value.get()
    # The batch builds its rows from read_instances by position.
    read = await pool.fetch(db.Queries("registry").read_instances, [iid])
    assert list(read[0].keys()) == [*Row.__struct_fields__, "row_version"]

    # Another writer (the reconciler finding the instance gone) has changed the row and not yet
    # committed: the batch reads the STARTING row, judges RUNNING a change, and its write waits.
    other = await pool.acquire()
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("UPDATE instances SET state = 'LOST', reason = 'host gone' WHERE id = $1", iid)
        batch = asyncio.create_task(records.handle_batch([running(iid, app, "198.18.100.9")]))
        await blocked_on(pool, await other.fetchval("SELECT pg_backend_pid()"))
        await tx.commit()
    finally:
        await pool.release(other)
    assert await asyncio.wait_for(batch, 10) == [bus.ACK]

    # Judged again against LOST: old news, nothing written over the other writer's fact.
    got = await pool.fetchrow("SELECT state, reason FROM instances WHERE id = $1", iid)
    assert (got["state"], got["reason"]) == ("LOST", "host gone")
    assert await pool.fetchval("SELECT count(*) FROM instance_events WHERE instance = $1 AND source = 'registry'",
                               iid) == 0
    assert await pool.fetchval("SELECT count(*) FROM endpoints_changed WHERE app = $1", app) == 0
    assert MOVED._value.get() == before + 1

    # With nothing in between, the same kind of report is written by the unlocked path.
    await rows.instance(app, iid, "198.18.100.9", state="STARTING")
    assert await records.handle_batch([running(iid, app, "198.18.100.10")]) == [bus.ACK]
    got = await pool.fetchrow("SELECT state, ip FROM instances WHERE id = $1", iid)
    assert (got["state"], got["ip"]) == ("RUNNING", "198.18.100.10")
    assert MOVED._value.get() == before + 1
    await pool.execute("DELETE FROM instance_events WHERE instance = $1", iid)
    await pool.execute("DELETE FROM endpoints_changed WHERE app = $1", app)
    await pool.execute("DELETE FROM outbox WHERE subject LIKE $1", f"%.{app}")


async def test_two_batches_in_flight_for_one_instance_keep_its_order(pool: asyncpg.Pool, nc, rows: TaskRows,
                                                                    uid: str) -> None:
    """STARTING and RUNNING of many instances in two batches handled at once, each batch naming
    every instance: whichever gets there first, every instance ends RUNNING with one event per
    transition (the loser of a race is judged again, never writes over the winner; a STARTING
    judged after RUNNING is old news)."""
    app = f"rr2-{uid}"
    await rows.app(app, {"http": 8080})
    ids = [f"{app}-{k:03d}" for k in range(200)]
    for iid in ids:
        await rows.instance(app, iid, "", state="PENDING")
    await pool.execute("UPDATE instances SET container_id = 'c1' WHERE app = $1", app)
    relay = outbox.Relay(pool, nc.jetstream(), subjects=natsauth.relay_subjects("registry"))
    records = Records(pool, db.Queries("registry"), relay, Announcer(pool, relay))

    def report(iid: str, k: int, state: str) -> Msg:
        r = messages.IpReport(instance=iid, app=app, host="h1", epoch=1, state=state, container_id="c1",
                              ip=f"198.18.101.{k % 250 + 1}" if state == "RUNNING" else "", at=time.time())
        return Msg(_client=None, subject=subjects.report("h1"), data=messages.encode(r))  # type: ignore[arg-type]

    for _ in range(3):
        starting = [report(i, k, "STARTING") for k, i in enumerate(ids)]
        up = [report(i, k, "RUNNING") for k, i in enumerate(ids)]
        await asyncio.gather(records.handle_batch(starting), records.handle_batch(up))
        got = await pool.fetch("SELECT state, count(*) AS n FROM instances WHERE app = $1 GROUP BY state", app)
        assert {r["state"]: r["n"] for r in got} == {"RUNNING": len(ids)}
        # RUNNING once each; STARTING at most once (written only when it came first).
        events = await pool.fetch("SELECT instance, state, count(*) AS n FROM instance_events "
                                  "WHERE instance = ANY($1) AND source = 'registry' GROUP BY instance, state", ids)
        assert all(r["n"] == 1 for r in events)
        assert sum(r["state"] == "RUNNING" for r in events) == len(ids)
        await pool.execute("UPDATE instances SET state = 'PENDING', ip = '' WHERE app = $1", app)
        await pool.execute("DELETE FROM instance_events WHERE instance = ANY($1)", ids)
    await pool.execute("DELETE FROM endpoints_changed WHERE app = $1", app)
    await pool.execute("DELETE FROM outbox WHERE subject LIKE $1", f"%.{app}")

