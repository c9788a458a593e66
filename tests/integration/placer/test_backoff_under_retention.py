"""A crash-looping app's relaunch delay keeps growing while retention removes its FAILED rows:
the placer counts failures from app_failures (kept where instances end), not from the rows
that remain (real task log, the real committer, retention keeping one ended instance)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest_asyncio

from libs import db
from libs.appspec import AppSpec
from services.placer.commit import Committer
from services.reconciler.retention import RetentionPolicy, prune
from tests.support.events import event_subjects


@pytest_asyncio.fixture
async def made(pool):
    out: dict[str, str] = {}
    yield out
    app, host = out.get("app", ""), out.get("host", "")
    async with pool.acquire() as conn, conn.transaction():
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM instances WHERE app = $1", app)]
        await conn.execute("DELETE FROM outbox WHERE subject LIKE 'noops.place.' || $1", host)
        await conn.execute("DELETE FROM outbox WHERE subject = ANY($1)", event_subjects([app], [host]))
        await conn.execute("DELETE FROM instance_events WHERE instance = ANY($1)", ids)
        for table in ("instances", "deployments", "app_versions", "app_failures"):
            await conn.execute(f"DELETE FROM {table} WHERE app = $1", app)
        await conn.execute("DELETE FROM apps WHERE id = $1", app)
        await conn.execute("DELETE FROM hosts WHERE id = $1", host)


async def test_backoff_grows_while_retention_prunes_failed_rows(pool, uid, made) -> None:
    host, app = made.setdefault("host", f"hb{uid}"), made.setdefault("app", f"crash-{uid}")
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, labels, last_seen) "
                       "VALUES ($1, 64, 65536, '{}', now() + interval '1 hour')", host)
    spec = AppSpec.model_validate({"id": app, "image": "noops/base:latest", "instances": 1,
                                   "constraints": [["hostname", "LIKE", host]], "backoff_seconds": 1,
                                   "backoff_factor": 2, "max_launch_delay_seconds": 1000})
    body = json.dumps(spec.model_dump(mode="json"))
    await pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, 1)", app, body)
    await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)", app, body)
    now = [datetime.now(timezone.utc)]
    q = db.Queries("placer")
    committer = Committer(pool, q, heartbeat_grace_s=3.0, clock=lambda: now[0])
    committer.token = await pool.fetchval("SELECT token FROM placer_fence WHERE id = 1") or \
        await pool.fetchval(q.fence_take, "test")
    policy = RetentionPolicy(keep_per_app=1, max_age_s=0, batch=1000, max_batches=10)
    retention = db.Queries("retention")

    assert (await committer.reconcile([app])).placed == 1
    delays = []
    for _ in range(5):
        # The instance crashes (as the registry records it), retention leaves one FAILED row.
        await pool.execute("UPDATE instances SET state = 'FAILED', reason = 'exited with code 1', updated_at = now() "
                           "WHERE app = $1 AND state = 'PENDING'", app)
        await prune(pool, retention, policy)
        assert await pool.fetchval("SELECT count(*) FROM instances WHERE app = $1 AND state = 'FAILED'", app) == 1
        await committer.reconcile([app])
        row = await pool.fetchrow("SELECT backoff_delay_s, launch_after FROM apps WHERE id = $1", app)
        delays.append(row["backoff_delay_s"])
        now[0] = row["launch_after"] + timedelta(seconds=0.1)   # the delay has passed: relaunch
        assert (await committer.reconcile([app])).placed == 1
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert await pool.fetchval("SELECT failures FROM app_failures WHERE app = $1", app) == 5
