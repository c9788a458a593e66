"""The one committer: reads a batch of apps from the task log under row locks, asks the pure
core for plans against the cached cluster snapshot, and writes plans, placement messages
(transactional outbox), deployment records and app status in one transaction — checked
against the leader's fencing token, so a deposed leader cannot commit."""
from __future__ import annotations

import collections
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

import asyncpg
from prometheus_client import Counter, Histogram

from libs import constraints as cons
from libs import ipam, messages, outbox
from libs.appspec import AppSpec
from libs.db import Queries
from services.placer import core, deploys, outgoing
from services.placer.sampling import Sampling
from services.placer.specs import ParsedSpec, SpecCache
from services.placer.snapshot import ClusterSnapshot, HostRow

log = logging.getLogger("noops.placer")

PLACED = Counter("noops_placer_instances_placed_total", "Instances placed")
STOPPED = Counter("noops_placer_instances_stopped_total", "Instances asked to stop")
UNPLACED = Counter("noops_placer_unplaceable_total", "App decisions that left instances waiting for room")
BATCH = Histogram("noops_placer_batch_seconds", "Time to decide and commit one batch of apps")



class Deposed(RuntimeError):
    """Another placer took the lead (its fencing token is newer): this one must not commit."""


@dataclass
class BatchResult:
    placed: int = 0
    stopped: int = 0
    wake_at: dict[str, datetime] = field(default_factory=dict)   # apps to look at again later
    again: set[str] = field(default_factory=set)                 # apps to look at again now (rollback)


def _inf_if(value: float, unlimited: bool) -> float:
    return float("inf") if unlimited else float(value)


def _parsed(cache: dict[str, dict], text: str | None) -> dict:
    """JSON columns repeat from one snapshot to the next: parse each distinct text once."""
    text = text or "{}"
    got = cache.get(text)
    if got is None:
        got = cache[text] = json.loads(text)
    return got


def host_row(r: asyncpg.Record, cache: dict[str, dict] | None = None) -> HostRow:
    cache = {} if cache is None else cache
    disk = _parsed(cache, r["disk_free_mb"])
    return HostRow(
        id=r["id"], cpus=r["cpus"], mem_mb=r["mem_mb"], labels=_parsed(cache, r["labels"]),
        disk_mb=_inf_if(max(disk.values(), default=0), not disk),
        egress_mbit=_inf_if(r["egress_mbit"], r["egress_mbit"] <= 0),
        addresses=_inf_if(r["addresses_free"], r["addresses_free"] < 0),
        up=r["up"], draining=r["draining"], cordoned=r["cordoned"],
        used_cpus=r["used_cpus"], used_mem_mb=r["used_mem_mb"], used_disk_mb=r["used_disk_mb"],
        used_egress_mbit=r["used_egress_mbit"], used_addresses=r["used_addresses"],
        ports_taken=frozenset(r["ports_listening"] or ()) | frozenset(r["host_ports"] or ()))


class Committer:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, *, heartbeat_grace_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 sampling: Sampling = Sampling()) -> None:
        self.pool, self.q, self.grace, self.clock = pool, queries, heartbeat_grace_s, clock
        self.sampling = sampling            # how many hosts a decision scores (NOOPS_PLACER_SCORE_*)
        self.token = 0                      # fencing token, set when this placer becomes leader
        self._snapshot: ClusterSnapshot | None = None
        self._scratch = None
        self._epochs: dict[str, int] = {}
        self._draining: frozenset[str] = frozenset()
        self._pool_hosts: frozenset[str] = frozenset()
        self._json_cache: dict[str, dict] = {}
        self._specs = SpecCache()
        self._taken_at = 0.0
        self.max_age_s = 1.0                # snapshot refresh period (our own reservations are in the scratch)
        self._refresh_cost_s = 0.0

    def invalidate(self) -> None:
        self._snapshot = None

    async def _refresh(self, conn: asyncpg.Connection) -> None:
        # A big cluster's snapshot costs (10,000 hosts, 100,000 instances: ~0.3 s of PostgreSQL and
        # placer): then it is kept longer, so refreshing never takes more than ~1/8 of the time.
        # Safe: our own reservations are in the scratch, a stale view only sees freed room late,
        # and hosts going down, coming back or appearing invalidate it at once.
        age = time.monotonic() - self._taken_at
        if self._snapshot is not None and age < max(self.max_age_s, 8 * self._refresh_cost_s):
            return
        started = time.monotonic()
        rows = await conn.fetch(self.q.hosts_snapshot, self.grace)
        if len(self._json_cache) > 4 * len(rows) + 1000:
            self._json_cache.clear()  # hosts gone or relabelled: start over rather than grow
        self._snapshot = ClusterSnapshot([host_row(r, self._json_cache) for r in rows])
        self._scratch = self._snapshot.scratch(self.sampling)
        self._draining = frozenset(r["id"] for r in rows if r["draining"])
        self._pool_hosts = frozenset(r["id"] for r in rows if r["ipam"] == "pool")
        self._epochs = {r["id"]: r["epoch"] for r in rows}
        self._taken_at = time.monotonic()
        self._refresh_cost_s = self._taken_at - started

    async def reconcile(self, app_ids: list[str]) -> BatchResult:
        with BATCH.time():
            try:
                return await self._reconcile(sorted(set(app_ids)))
            except BaseException:
                self.invalidate()  # the scratch may hold reservations of a plan that did not commit
                raise

    async def _reconcile(self, app_ids: list[str]) -> BatchResult:
        now = self.clock()
        res = BatchResult()
        async with self.pool.acquire() as conn, conn.transaction():
            token = await conn.fetchval(self.q.fence_check)
            if token != self.token:
                raise Deposed(f"fencing token is {token}, this placer holds {self.token}")
            await self._refresh(conn)
            assert self._scratch is not None
            rows = await conn.fetch(self.q.lock_apps, app_ids)
            if not rows:
                return res
            ids = [r["id"] for r in rows]
            insts: dict[str, list[asyncpg.Record]] = {a: [] for a in ids}
            for r in await conn.fetch(self.q.live_instances_of, ids):
                insts[r["app"]].append(r)
            want = sorted({(r["app"], r["version"]) for a in ids for r in insts[a]})
            vspecs: dict[str, dict[int, tuple[ParsedSpec, int]]] = {a: {} for a in ids}
            for r in await conn.fetch(self.q.version_specs_of, [w[0] for w in want], [w[1] for w in want]):
                vspecs[r["app"]][r["version"]] = (self._specs.get(r["spec"]), r["restart_gen"])
            failures = {r["app"]: r["failures"] for r in await conn.fetch(self.q.failures_of, ids)}
            deps = {r["app"]: r for r in await conn.fetch(self.q.latest_deployments_of, ids)}

            w = _Writes()
            for row in rows:
                a = row["id"]
                self._one(row, insts[a], vspecs[a], failures.get(a, 0), deps.get(a), now, w, res)
            await self._write(conn, w, now)
            res.placed = len(w.starts)  # an exhausted address pool may have held some back
        PLACED.inc(res.placed)
        STOPPED.inc(res.stopped)
        return res

    def _one(self, row: asyncpg.Record, inst_rows: list[asyncpg.Record],
             vspecs: dict[int, tuple[ParsedSpec, int]], failures: int, dep_row: asyncpg.Record | None,
             now: datetime, w: "_Writes", res: BatchResult) -> None:
        app_id, version = row["id"], row["version"]
        parsed = self._specs.get(row["spec"])
        spec = parsed.spec
        if spec is None:
            # A stored spec this version cannot read: permanent, so absorb and say why.
            log.error("stored app spec is invalid; skipping", extra={"app": app_id, "error": parsed.error})
            return
        key = parsed.launch_key(row["restart_gen"])
        compatible = frozenset(v for v, (ps, gen) in vspecs.items() if v != version and ps.launch_key(gen) == key)
        dep = None
        if dep_row is not None:
            dep = deploys.DeploymentView(dep_row["id"], dep_row["from_version"], dep_row["to_version"],
                                         dep_row["state"], json.loads(dep_row["progress"] or "{}"),
                                         dep_row["progress_at"])
        new_deployment = not row["deleted"] and (dep is None or dep.to_version < version)
        bo = deploys.backoff(failures, row["failures_seen"], row["backoff_delay_s"], row["launch_after"],
                             first_s=spec.backoff_seconds, factor=spec.backoff_factor,
                             max_s=spec.max_launch_delay_seconds, reset=new_deployment, now=now)
        paused = dep is not None and dep.to_version == version and dep.state in ("paused", "cancelled")
        us = spec.upgrade_strategy
        app = core.AppView(
            id=app_id, version=version, instances=row["instances"], deleted=row["deleted"],
            cpus=spec.resources.cpus, mem_mb=spec.resources.mem_mb, disk_mb=spec.resources.disk_mb,
            egress_mbit=spec.resources.egress_mbit, constraints=tuple(cons.parse(c) for c in spec.constraints),
            strategy=spec.placement, minimum_health_capacity=us.minimum_health_capacity,
            maximum_over_capacity=us.maximum_over_capacity, compatible_versions=compatible, paused=paused,
            may_launch=bo.may_launch(now), host_ports=tuple(p.host_port for p in spec.ports if p.host_port))
        view = core.InstanceView
        views = [view(r["id"], r["version"], r["host"], r["state"], r["desired"], n, r["kill_requested"],
                      r["in_service"])
                 for n, r in enumerate(inst_rows)]
        # Seeded from the app and its version: a post-mortem can replay the same decision.
        plan = core.decide(app, views, self._scratch, seed=zlib.crc32(f"{app_id}:{version}".encode()),
                           draining=self._draining)
        w.add_plan(self, spec, parsed.container(), version, plan)
        res.placed += len(plan.place)
        res.stopped += len(plan.stop)
        if plan.unplaced:
            UNPLACED.inc()
        if not bo.may_launch(now) and bo.launch_after is not None:
            res.wake_at[app_id] = bo.launch_after

        last_good = row["last_good_version"]
        if new_deployment:
            serving = collections.Counter(v.version for v in views if v.serving and v.desired == "RUNNING")
            last_good = deploys.rollback_target(last_good, dep, serving,
                                                {v: ps.json.get("instances", 0) for v, (ps, _) in vspecs.items()})
        if not row["deleted"]:
            step = deploys.track(version, last_good, dep, plan, target=row["instances"],
                                 deadline_s=us.progress_deadline_s, auto_rollback=us.auto_rollback, now=now)
            if step.create:
                w.new_deps.append((app_id, last_good, version))
            elif step.update and dep is not None:
                w.dep_updates.append((dep.id, step.state, step.reason, json.dumps(step.progress), step.moved))
            if step.succeeded:
                last_good = version
            if step.rollback_to is not None:
                w.rollbacks.append((app_id, step.rollback_to))
                res.again.add(app_id)
        status, reason = _status(row["deleted"], plan, bo, now)
        w.apps.append((app_id, status, reason, bo.delay_s, bo.launch_after, bo.failures_seen, last_good))

    async def _addresses(self, conn: asyncpg.Connection, w: "_Writes") -> dict[str, str]:
        """Reserve pool addresses for instances placed on hosts in IPAM mode "pool".  One app
        at a time in a savepoint: an exhausted pool holds back that app's new instances only."""
        by_app: dict[str, list[str]] = {}
        for s in w.starts:
            if s.host in self._pool_hosts:
                by_app.setdefault(s.app, []).append(s.id)
        got: dict[str, str] = {}
        refused: dict[str, str] = {}
        for app_id, ids in by_app.items():
            try:
                async with conn.transaction():
                    got.update(await ipam.allocate(conn, ids))
            except ipam.PoolExhausted as exc:
                refused[app_id] = str(exc)
        if refused:
            self.invalidate()  # the scratch reserved room for instances that are not placed now
            w.starts = [s for s in w.starts if s.app not in refused]
            w.apps = [(a, "waiting", refused[a], *rest) if a in refused else (a, st, why, *rest)
                      for a, st, why, *rest in w.apps]
        return got

    async def _write(self, conn: asyncpg.Connection, w: "_Writes", now: datetime) -> None:
        q = self.q
        addresses = await self._addresses(conn, w)
        placements: list[messages.Placement] = []
        if w.starts:
            st = w.starts
            ids = [s.id for s in st]
            await conn.execute(q.insert_instances, ids, [s.app for s in st], [s.version for s in st],
                               [s.host for s in st], [s.epoch for s in st], [s.cpus for s in st],
                               [s.mem_mb for s in st], [s.disk_mb for s in st], [s.egress_mbit for s in st],
                               [self.token] * len(st))
            await conn.execute(q.insert_events, ids, ["PENDING"] * len(ids), ["placed"] * len(ids))
            placements += [messages.Placement(instance=s.id, app=s.app, version=s.version, host=s.host,
                                              epoch=s.epoch, action="start", spec=w.specs[s.app],
                                              address=addresses.get(s.id, "")) for s in st]
            # Announced here, not by migration 0015's trigger (which leaves PENDING out): the
            # cheap way for the commit of 100,000 placements.
            w.out += outgoing.placed_events(((s.app, s.id, s.host, s.epoch, s.version) for s in st), now.timestamp())
        if w.stop_ids:
            for r in await conn.fetch(q.mark_stopping, w.stop_ids):
                spec = w.specs[r["app"]]
                placements.append(messages.Placement(instance=r["id"], app=r["app"], version=r["version"],
                                                     host=r["host"], epoch=r["epoch"], action="stop", spec=spec))
        w.out += outgoing.per_host(placements)
        if w.apps:
            await conn.execute(q.update_apps, *map(list, zip(*w.apps)))
        if w.dep_updates:
            await conn.execute(q.update_deployments, *map(list, zip(*w.dep_updates)))
        if w.new_deps:
            await conn.execute(q.supersede_deployments, [d[0] for d in w.new_deps])
            await conn.execute(q.insert_deployments, *map(list, zip(*w.new_deps)))
        for app_id, to_version in w.rollbacks:
            r = await conn.fetchrow(q.rollback_app, app_id, to_version)
            if r is not None:
                await conn.execute(q.record_version, app_id, r["version"], r["spec"], r["restart_gen"])
                log.warning("deployment failed; rolled back", extra={"app": app_id, "to_version": to_version,
                                                                       "new_version": r["version"]})
        await outbox.enqueue(conn, w.out)


def _status(deleted: bool, plan: core.Plan, bo: deploys.Backoff, now: datetime) -> tuple[str, str]:
    if deleted:
        return "deleting", ""
    if plan.unplaced:
        return "waiting", plan.explain()
    if not bo.may_launch(now):
        return "backoff", f"relaunch delayed {bo.delay_s:.1f}s after a failure"
    return ("stable", "") if plan.converged else ("deploying", "")


class _Writes:
    """Everything one batch writes, gathered so that each kind is one statement."""

    def __init__(self) -> None:
        self.starts: list[_Start] = []
        self.stop_ids: list[str] = []
        self.specs: dict[str, messages.ContainerSpec] = {}
        self.out: list[tuple[str, str, messages.Msg]] = []
        self.apps: list[tuple] = []
        self.dep_updates: list[tuple] = []
        self.new_deps: list[tuple] = []
        self.rollbacks: list[tuple[str, int]] = []

    def add_plan(self, c: Committer, spec: AppSpec, container: messages.ContainerSpec, version: int,
                 plan: core.Plan) -> None:
        self.specs[spec.id] = container
        r = spec.resources
        # 48 random bits per instance id, from one read of the system's random source per plan
        # (a uuid4 each was a visible share of placing 100,000 instances).
        suffixes = os.urandom(6 * len(plan.place)).hex()
        for k, host in enumerate(plan.place):
            self.starts.append(_Start(f"{spec.id}-{suffixes[12 * k:12 * k + 12]}", spec.id, version, host,
                                      c._epochs.get(host, 1), r.cpus, r.mem_mb, r.disk_mb, r.egress_mbit))
        self.stop_ids += plan.stop


class _Start(NamedTuple):   # one per placement (100,000 a deployment): a tuple is cheap to build
    id: str
    app: str
    version: int
    host: str
    epoch: int
    cpus: float
    mem_mb: int
    disk_mb: int
    egress_mbit: int

