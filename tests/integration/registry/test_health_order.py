"""Health verdicts land in the task log in the order hostd reached them: an older verdict
delivered after a newer one (redelivery, two batches in flight) changes nothing."""
from __future__ import annotations


import asyncpg
from nats.aio.msg import Msg

from libs import db, messages, natsauth, outbox, subjects
from services.registry.announcer import Announcer
from services.registry.records import Records
from tests.integration.registry.taskrows import TaskRows



def verdict(iid: str, app: str, healthy: bool, at: float) -> Msg:
    r = messages.IpReport(instance=iid, app=app, host="h1", epoch=1, state="RUNNING", container_id="c1",
                          ip="198.18.100.9", at=at, healthy=healthy, health=f"http /: {'ok' if healthy else 'fail'}")
    return Msg(_client=None, subject=subjects.report("h1"), data=messages.encode(r))  # type: ignore[arg-type]


async def test_an_older_verdict_arriving_late_does_not_win(pool: asyncpg.Pool, nc, rows: TaskRows, uid: str) -> None:
    app, iid = f"ho-{uid}", f"ho-{uid}-1"
    await rows.app(app, {"http": 8080})
    await rows.instance(app, iid, "198.18.100.9")
    await pool.execute("UPDATE instances SET container_id = 'c1' WHERE id = $1", iid)
    relay = outbox.Relay(pool, nc.jetstream(), subjects=natsauth.relay_subjects("registry"))
    records = Records(pool, db.Queries("registry"), relay, Announcer(pool, relay))

    await records.handle_batch([verdict(iid, app, False, at=20.0)])       # the newer verdict first
    await records.handle_batch([verdict(iid, app, True, at=10.0)])        # then the older one, late
    got = await pool.fetchrow("SELECT healthy, health, health_at FROM instances WHERE id = $1", iid)
    assert (got["healthy"], got["health"], got["health_at"]) == (False, "http /: fail", 20.0)

    # In one batch too: the later verdict in time wins, whatever the order of delivery.
    await records.handle_batch([verdict(iid, app, True, at=30.0), verdict(iid, app, False, at=25.0)])
    got = await pool.fetchrow("SELECT healthy, health_at FROM instances WHERE id = $1", iid)
    assert (got["healthy"], got["health_at"]) == (True, 30.0)
    await pool.execute("DELETE FROM instance_events WHERE instance = $1", iid)
    await pool.execute("DELETE FROM outbox WHERE subject = $1", subjects.deploy(app))
