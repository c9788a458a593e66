"""Rows the placer's integration tests write straight into the task log, and a committer that
holds the current fencing token."""
from __future__ import annotations

import json
import time

from nats.aio.msg import Msg

from libs import db, messages, natsauth, outbox, subjects
from libs.appspec import AppSpec
from services.placer.commit import Committer
from services.registry.announcer import Announcer
from services.registry.records import Records


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
    """These instances' hosts report ``state`` for them (one batch), through the registry's real
    report handling (services/registry/records.py: judged, written, announced)."""
    rows = {r["id"]: r for r in await pool.fetch("SELECT id, app, host, epoch FROM instances WHERE id = ANY($1)", ids)}
    ips = ips or [f"198.18.8.{k % 250 + 1}" for k in range(len(ids))]
    msgs = []
    for k, iid in enumerate(ids):
        r = rows[iid]
        rep = messages.IpReport(instance=iid, app=r["app"], host=r["host"], epoch=r["epoch"], state=state,
                                container_id=f"c{k}", ip=ips[k], reason=reason, at=time.time(), healthy=healthy,
                                health="tcp http: connected" if healthy is not None else "")
        msgs.append(Msg(_client=None, subject=subjects.report(r["host"]), data=messages.encode(rep)))  # type: ignore[arg-type]
    relay = outbox.Relay(pool, None, subjects=natsauth.relay_subjects("registry"))  # type: ignore[arg-type]  (never run)
    await Records(pool, db.Queries("registry"), relay, Announcer(pool, relay)).handle_batch(msgs)
