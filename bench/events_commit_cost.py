"""What the change events (migration 0015's triggers) add to the placer's commit of a big batch.

The committer places ``--instances`` instances of ``--apps`` apps on ``--hosts`` hosts in one
reconcile, in a scratch database, without and with the events (the triggers disabled and the
committer's own announcement of its placements replaced by nothing, or both as they are) in turn
(``--rounds`` each, alternating); reports the median commit time of each and the outbox rows
the events add.  Runs against the machine's PostgreSQL only (no NATS).

    .venv/bin/python -m bench.events_commit_cost [--hosts 200] [--apps 200] [--instances 20000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from devtools import infra
from libs import db
from libs.appspec import AppSpec
from services.placer import outgoing
from services.placer.commit import Committer

TRIGGERS = [("instance_events", "instance_events_announce"), ("deployments", "deployments_announce_insert"),
            ("deployments", "deployments_announce_update")]


_ANNOUNCE = outgoing.placed_events


async def _setup(pool, hosts: int, apps: int, per_app: int) -> list[str]:
    await pool.executemany("INSERT INTO hosts (id, cpus, mem_mb, labels, last_seen) "
                           "VALUES ($1, 1024, 1048576, '{}', now() + interval '1 day')",
                           [(f"h{k}",) for k in range(hosts)])
    ids = [f"app-{k}" for k in range(apps)]
    for a in ids:
        body = json.dumps(AppSpec.model_validate({"id": a, "image": "noops/base:latest",
                                                  "instances": per_app}).model_dump(mode="json"))
        await pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, $3)",
                           a, body, per_app)
        await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)", a, body)
    return ids


async def _reset(pool) -> None:
    for table in ("outbox", "instance_events", "instances", "deployments"):
        await pool.execute(f"TRUNCATE {table}")
    await pool.execute("VACUUM ANALYZE instances")


async def _round(pool, app_ids: list[str], events: bool) -> tuple[float, int]:
    await _reset(pool)
    verb = "ENABLE" if events else "DISABLE"
    for table, trigger in TRIGGERS:
        await pool.execute(f"ALTER TABLE {table} {verb} TRIGGER {trigger}")
    outgoing.placed_events = _ANNOUNCE if events else (lambda _starts, _at: [])
    c = Committer(pool, db.Queries("placer"), heartbeat_grace_s=3600.0)
    c.token = await pool.fetchval(db.Queries("placer").fence_take, "bench")
    started = time.perf_counter()
    res = await c.reconcile(app_ids)
    took = time.perf_counter() - started
    assert res.placed == len(app_ids) * (await pool.fetchval("SELECT min(instances) FROM apps")), res
    rows = await pool.fetchval("SELECT count(*) FROM outbox WHERE kind IN ('instance', 'deployment')")
    return took, rows


async def main(hosts: int, apps: int, instances: int, rounds: int) -> dict:
    name = f"noops_bench_events_{uuid.uuid4().hex[:6]}"
    infra.ensure_database(name, fresh=True)
    try:
        pool = await db.connect(infra.pg_dsn(name))
        try:
            await db.migrate(pool)
            app_ids = await _setup(pool, hosts, apps, instances // apps)
            times: dict[bool, list[float]] = {False: [], True: []}
            rows = 0
            for k in range(2 * rounds):
                events = k % 2 == 1
                took, n = await _round(pool, app_ids, events)
                times[events].append(took)
                rows = max(rows, n)
        finally:
            await pool.close()
    finally:
        infra.drop_database(name)
    before, after = statistics.median(times[False]), statistics.median(times[True])
    return {"instances": instances, "apps": apps, "commit_s_without_events": round(before, 3),
            "commit_s_with_events": round(after, 3), "added_pct": round(100 * (after - before) / before, 1),
            "event_outbox_rows": rows, "rounds": rounds}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--apps", type=int, default=200)
    ap.add_argument("--instances", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.hosts, a.apps, a.instances, a.rounds))))
