"""Report batches in flight at once (the registry handles two) never write over each other: each
locks its instances in id order before judging (records.py), so the later one is judged against
what the earlier wrote."""
from __future__ import annotations

import asyncio
import time

import asyncpg
from nats.aio.msg import Msg

from libs import db, messages, natsauth, outbox, subjects
from services.registry.announcer import Announcer
from services.registry.records import Records
from tests.integration.registry.taskrows import TaskRows


async def test_two_batches_in_flight_for_one_instance_keep_its_order(pool: asyncpg.Pool, nc, rows: TaskRows,
                                                                    uid: str) -> None:
    """STARTING and RUNNING of many instances in two batches handled at once, each batch naming
    every instance: whichever gets there first, every instance ends RUNNING with one event per
    transition (a STARTING judged after RUNNING is old news)."""
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

