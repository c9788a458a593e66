"""Reads one app's snapshot from the task log, asks the pure core for a plan and commits it,
with the placement messages, in one transaction (transactional outbox)."""
from __future__ import annotations

import json
import logging
import uuid
import zlib
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from libs import messages, outbox, subjects
from libs.appspec import AppSpec
from libs.db import Queries
from services.placer import core

log = logging.getLogger("noops.placer")

PLACED = Counter("noops_placer_instances_placed_total", "Instances placed")
STOPPED = Counter("noops_placer_instances_stopped_total", "Instances asked to stop")
UNPLACED = Counter("noops_placer_unplaceable_total", "Decisions that left instances unplaced")


@dataclass(frozen=True)
class Outcome:
    placed: int
    stopped: int
    unplaced: int
    reason: str


def container_spec(spec: AppSpec) -> messages.ContainerSpec:
    return messages.ContainerSpec(
        image=spec.image, cmd=list(spec.cmd), env=dict(spec.env), labels=dict(spec.labels),
        cpus=spec.resources.cpus, mem_mb=spec.resources.mem_mb,
        ports=[messages.PortSpec(name=p.name, container_port=p.container_port, protocol=p.protocol)
               for p in spec.ports])


def _launch_key(spec_json: dict) -> str:
    """What makes two versions run the same container (a pure scale changes only the count)."""
    return json.dumps({k: v for k, v in spec_json.items() if k != "instances"}, sort_keys=True)


class Committer:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, *, heartbeat_grace_s: float) -> None:
        self.pool, self.q, self.grace = pool, queries, heartbeat_grace_s

    async def reconcile_app(self, app_id: str) -> Outcome | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(self.q.lock_app, app_id)
            if row is None:
                return None
            spec_json = json.loads(row["spec"])
            spec = AppSpec.model_validate(spec_json)
            inst_rows = await conn.fetch(self.q.live_instances, app_id)
            versions = sorted({r["version"] for r in inst_rows} - {row["version"]})
            compatible = frozenset()
            if versions:
                key = _launch_key(spec_json)
                compatible = frozenset(
                    r["version"] for r in await conn.fetch(self.q.version_specs, app_id, versions)
                    if _launch_key(json.loads(r["spec"])) == key)
            host_rows = await conn.fetch(self.q.live_hosts, self.grace)
            app = core.AppView(id=app_id, version=row["version"], instances=row["instances"],
                               deleted=row["deleted"], cpus=spec.resources.cpus, mem_mb=spec.resources.mem_mb,
                               compatible_versions=compatible)
            instances = [core.InstanceView(id=r["id"], version=r["version"], host=r["host"], state=r["state"],
                                           desired=r["desired"], seq=n) for n, r in enumerate(inst_rows)]
            hosts = [core.HostView(id=r["id"], cpus=r["cpus"], mem_mb=r["mem_mb"], cpus_used=r["cpus_used"],
                                   mem_used=r["mem_used"], instances=r["instances"]) for r in host_rows]
            # Seeded from the app and its version: a post-mortem can replay the same decision.
            plan = core.decide(app, instances, hosts, seed=zlib.crc32(f"{app_id}:{row['version']}".encode()))
            await self._apply(conn, spec, row["version"], plan)
            status, reason = self._status(row["deleted"], plan)
            await conn.execute(self.q.set_status, app_id, status, reason)
        if plan.place or plan.stop or plan.unplaced:
            log.info("plan committed", extra={"app": app_id, "version": row["version"], "placed": len(plan.place),
                                              "stopped": len(plan.stop), "unplaced": plan.unplaced})
        PLACED.inc(len(plan.place))
        STOPPED.inc(len(plan.stop))
        if plan.unplaced:
            UNPLACED.inc()
        return Outcome(len(plan.place), len(plan.stop), plan.unplaced, reason)

    @staticmethod
    def _status(deleted: bool, plan: core.Plan) -> tuple[str, str]:
        if deleted:
            return "deleting", ""
        if plan.unplaced:
            return "waiting", plan.explain()
        return "deploying" if plan.place or plan.stop else "stable", ""

    async def _apply(self, conn: asyncpg.Connection, spec: AppSpec, version: int, plan: core.Plan) -> None:
        cspec = container_spec(spec)
        out: list[tuple[str, str, messages.Msg]] = []
        if plan.place:
            ids = [f"{spec.id}-{uuid.uuid4().hex[:12]}" for _ in plan.place]
            await conn.execute(self.q.insert_instances, ids, spec.id, version,
                               spec.resources.cpus, spec.resources.mem_mb, list(plan.place))
            await conn.execute(self.q.insert_events, ids, "PENDING", "placed")
            for iid, host in zip(ids, plan.place):
                msg = messages.Placement(instance=iid, app=spec.id, version=version, host=host, epoch=1,
                                         action="start", spec=cspec)
                out.append((subjects.place(host), f"place:{iid}:1:start", msg))
        if plan.stop:
            for r in await conn.fetch(self.q.mark_stopping, list(plan.stop)):
                msg = messages.Placement(instance=r["id"], app=spec.id, version=r["version"], host=r["host"],
                                         epoch=r["epoch"], action="stop", spec=cspec)
                out.append((subjects.place(r["host"]), f"place:{r['id']}:{r['epoch']}:stop", msg))
        await outbox.enqueue(conn, out)
