"""The heartbeat sink against the real hosts table: a heartbeat with news is upserted in full,
one without news only moves last_seen and load, and either kind brings a DOWN host back.  A host
"appears" (apps waiting for room looked at again) when new, back from DOWN, or heard again after
more than the grace -- not when one round merely came late."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest_asyncio

from libs import db, messages, subjects
from services.placer.heartbeats import HeartbeatSink


@pytest_asyncio.fixture
async def hosts(pool):
    made: list[str] = []
    yield made
    await pool.execute("DELETE FROM hosts WHERE id = ANY($1)", made)


def _msg(hb: messages.Heartbeat) -> SimpleNamespace:
    # What the sink reads of a NATS message: the subject and the payload.
    return SimpleNamespace(subject=subjects.heartbeat(hb.host), data=messages.encode(hb))


def _hb(host: str, *, cpus: float = 8, load1: float = 0.1, labels: dict | None = None) -> messages.Heartbeat:
    return messages.Heartbeat(host=host, cpus=cpus, mem_mb=4096, labels=labels or {"rack": "r1"}, instances=0,
                              load1=load1, at=time.time())


async def test_news_upserts_silence_touches_and_down_hosts_come_back(pool, hosts, uid):
    h = f"hb-{uid}"
    hosts.append(h)
    back: list[list[str]] = []
    new: list[list[str]] = []

    async def on_back(ids: list[str]) -> None:
        back.append(ids)

    clock = [1000.0]
    sink = HeartbeatSink(pool, db.Queries("placer"), on_new_host=new.append, on_host_back=on_back,
                         clock=lambda: clock[0], grace_s=3.0)

    async def beat(hb: messages.Heartbeat):
        await sink.handle(_msg(hb))
        await sink.flush()
        return await pool.fetchrow("SELECT cpus, labels::text AS labels, load1, last_seen, state FROM hosts "
                                   "WHERE id = $1", h)

    first = await beat(_hb(h))
    assert first["cpus"] == 8 and json.loads(first["labels"]) == {"rack": "r1"} and new == [[h]]
    clock[0] += 2.5                                       # a late round: still within the grace
    quiet = await beat(_hb(h, load1=0.7))                 # no news: last_seen and load move
    assert quiet["last_seen"] > first["last_seen"] and quiet["load1"] == 0.7 and quiet["cpus"] == 8
    assert new == [[h]]                                   # ...and it did not "appear" again
    clock[0] += 3.5                                       # silent past the grace: its room is new again
    await beat(_hb(h, load1=0.7))
    assert new == [[h], [h]]
    news = await beat(_hb(h, load1=0.7, cpus=16, labels={"rack": "r2"}))
    assert news["cpus"] == 16 and json.loads(news["labels"]) == {"rack": "r2"}

    await pool.execute("UPDATE hosts SET state = 'DOWN' WHERE id = $1", h)
    again = await beat(_hb(h, load1=0.7, cpus=16, labels={"rack": "r2"}))   # no news, but it speaks
    assert again["state"] == "UP" and back == [[h]]
    assert new == [[h], [h], [h]]                         # back from DOWN: room again, however recent

    await pool.execute("DELETE FROM hosts WHERE id = $1", h)   # its row went away (by hand)
    await beat(_hb(h, load1=0.7, cpus=16, labels={"rack": "r2"}))   # the touch finds no row...
    row = await beat(_hb(h, load1=0.7, cpus=16, labels={"rack": "r2"}))   # ...so it is written in full
    assert row is not None and row["cpus"] == 16
