"""Rows the placer's integration tests write straight into the task log, and a committer that
holds the current fencing token."""
from __future__ import annotations

import json

from libs import db, outbox
from libs.appspec import AppSpec
from services.placer.commit import Committer


async def add_host(pool, host: str, mode: str = "dhcp") -> None:
    """A host that looks online for the next hour, with room for anything a test asks."""
    await pool.execute("INSERT INTO hosts (id, cpus, mem_mb, labels, last_seen, ipam) "
                       "VALUES ($1, 64, 65536, '{}', now() + interval '1 hour', $2)", host, mode)


async def add_app(pool, app_id: str, instances: int, host: str, ports: list[dict] | None = None) -> None:
    """Version 1 of an app whose instances may go only to hosts matching ``host``."""
    spec = AppSpec.model_validate({"id": app_id, "image": "noops/base:latest", "instances": instances,
                                   "constraints": [["hostname", "LIKE", host]], "ports": ports or []})
    body = json.dumps(spec.model_dump(mode="json"))
    await pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, $3)",
                       app_id, body, instances)
    await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)", app_id, body)


async def committer(pool) -> Committer:
    c = Committer(pool, db.Queries("placer"), heartbeat_grace_s=3.0)
    c.token = await pool.fetchval("SELECT token FROM placer_fence WHERE id = 1") or \
        await pool.fetchval(db.Queries("placer").fence_take, "test")
    return c


async def report(pool, ids: list[str], state: str, healthy: bool | None = None, reason: str = "",
                 ips: list[str] | None = None) -> None:
    """What the registry writes for a batch of accepted reports (its one statement, record_batch):
    the instances' new state and their transitions."""
    n, q = len(ids), db.Queries("registry")
    ips = ips or [f"198.18.8.{k % 250 + 1}" for k in range(n)]
    health = "tcp http: connected" if healthy is not None else ""
    await pool.execute(q.record_batch, ids, [state] * n, ips, [f"c{k}" for k in range(n)], [reason] * n, [""] * n,
                       [""] * n, [0.0] * n, [healthy] * n, [health] * n, ids, [state] * n, ["reported"] * n,
                       [], [], [], [], outbox.CHANNEL, [0.0] * n)
