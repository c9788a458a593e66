"""One reconciler round, and the loop that runs them: on the interval, and at once when asked
(noops.reconcile.now, from POST /v1/drift).

    views (hosts, sinks, Prometheus, then the task log) --> plan.compute (pure, with the memory of
    the last round) --> act (unless dry run; fenced) --> retention, LB ports of deleted apps -->
    the round's record (reconciler_rounds, GET /v1/drift), metrics, log lines
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg
import httpx
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Gauge, Histogram

from libs import db, messages, outbox
from libs.settings import ReconcilerSettings
from services.reconciler import act, views
from services.reconciler.plan import KINDS, Observed, Policy, Result, compute
from services.reconciler.retention import RetentionPolicy, prune

log = logging.getLogger("noops.reconciler")

DRIFT = Gauge("noops_reconciler_drift", "Differences between the task log and the other systems, last round", ["kind"])
LAST_ROUND = Gauge("noops_reconciler_last_round_timestamp_seconds", "When the last round finished")
HOSTS_CHECKED = Gauge("noops_reconciler_hosts_checked", "Hosts asked for their inventory in the last round")
ROUND_SECONDS = Histogram("noops_reconciler_round_seconds", "One whole round: views, comparison, actions",
                          buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))


async def release_lb_ports(pool: asyncpg.Pool, q: db.Queries, retain_s: float) -> list[str]:
    """Ports of apps deleted more than ``retain_s`` ago, freed; returns "app/port_name:port" each."""
    freed = [f"{r['app']}/{r['port_name']}:{r['port']}" for r in await pool.fetch(q.release_lb_ports, retain_s)]
    if freed:
        log.info("released load-balancer ports of deleted apps", extra={"ports": freed})
    return freed


def policy_of(s: ReconcilerSettings) -> Policy:
    return Policy(grace_s=s.grace_s, max_actions=s.max_actions, dry_run=s.dry_run,
                  prometheus_grace_s=s.prometheus_grace_s)


@dataclass
class Round:
    """What one round found and did (also what GET /v1/drift shows)."""
    id: int = 0
    trigger: str = "interval"
    result: Result | None = None
    done: act.Done = field(default_factory=act.Done)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)   # step -> seconds
    now: float = 0.0


class Reconciler:
    def __init__(self, settings: ReconcilerSettings, pool: asyncpg.Pool, q: db.Queries, nc: NATS,
                 relay: outbox.Relay, *, holder: str, fence: int, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.s, self.pool, self.q, self.nc, self.relay = settings, pool, q, nc, relay
        self.holder, self.fence, self.http, self.clock = holder, fence, http, clock
        self.policy = policy_of(settings)
        self.retention = RetentionPolicy.from_settings(settings)
        self.retention_q = db.Queries("retention")
        self.memory: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._trigger = "interval"
        self.last: Round | None = None

    # ------------------------------------------------------------------ triggers
    async def on_now(self, msg: Msg) -> None:
        """noops.reconcile.now: run a round at once (a burst of requests is one round)."""
        try:
            why = messages.decode(msg.data, messages.ReconcileNow).reason if msg.data else ""
        except messages.DecodeError:
            why = "?"
        self._trigger = f"on demand{': ' + why if why else ''}"[:100]
        self._wake.set()

    async def run(self) -> None:
        while True:
            trigger, self._trigger = self._trigger, "interval"
            self._wake.clear()
            try:
                await self.one_round(trigger)
            except act.Fenced:
                raise
            except db.TRANSIENT as exc:   # the next round is the retry: it comes at the usual interval
                log.warning("round failed; will retry", extra={"error": str(exc) or type(exc).__name__})
            try:
                await asyncio.wait_for(self._wake.wait(), self.s.interval_s)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ one round
    async def observe(self) -> tuple[views.Views, list[str]]:
        s, errors = self.s, []
        t0 = time.perf_counter()
        hosts = [r["id"] for r in await self.pool.fetch(self.q.recent_hosts, s.host_silent_s)]
        prom: asyncio.Future | None = None
        if s.prometheus_url and self.http is not None:
            prom = asyncio.ensure_future(views.prometheus_targets(self.http, s.prometheus_url, s.prometheus_job))
        invs, (sinks, why) = await asyncio.gather(
            views.inventories(self.nc, hosts, timeout_s=s.inventory_timeout_s, concurrency=s.concurrency),
            views.sinks(self.nc, s.sinks_timeout_s))
        if why:
            errors.append(why)
        targets = None
        if prom is not None:
            targets, why = await prom
            if why:
                errors.append(why)
        t1 = time.perf_counter()
        async with self.pool.acquire() as conn:
            desired = await views.task_log(conn, self.q, views.named_instances(invs), host_silent_s=s.host_silent_s)
        t2 = time.perf_counter()
        answered = sum(v is not None for v in invs.values())
        return views.Views(desired, Observed(invs, sinks, targets), tuple(errors), len(hosts), answered,
                           {"views": t1 - t0, "task_log": t2 - t1}), errors

    async def one_round(self, trigger: str = "interval") -> Round:
        t0 = time.perf_counter()
        started = datetime.now(timezone.utc)
        v, errors = await self.observe()
        t1 = time.perf_counter()
        now = self.clock()
        result = compute(v.desired, v.observed, self.memory, now, self.policy)
        self.memory = dict(result.memory)
        rnd = Round(trigger=trigger, result=result, errors=errors, now=now)
        t2 = time.perf_counter()
        if result.actions and not self.s.dry_run:
            await self._act(result, rnd)
        t3 = time.perf_counter()
        await self._housekeeping(rnd)
        rnd.seconds = time.perf_counter() - t0
        rnd.timings = {k: round(x, 4) for k, x in (*v.read_s.items(), ("compute", t2 - t1), ("act", t3 - t2),
                                                   ("housekeeping", t0 + rnd.seconds - t3), ("total", rnd.seconds))}
        await self._record(rnd, started, v)
        ROUND_SECONDS.observe(rnd.seconds)
        self.last = rnd
        return rnd

    async def _act(self, result: Result, rnd: Round) -> None:
        if await self.pool.fetchval(self.q.fence_check) != self.fence:
            raise act.Fenced("another reconciler took over")
        a, s = result.actions, self.s
        await asyncio.gather(
            act.lose(self.pool, self.q, self.relay, a.lose, fence=self.fence, done=rnd.done),
            act.sweep(self.nc, a.sweeps, timeout_s=s.sweep_timeout_s, concurrency=s.concurrency, done=rnd.done),
            act.repair(self.nc, a.repairs, timeout_s=s.sinks_timeout_s, done=rnd.done))

    async def _housekeeping(self, rnd: Round) -> None:
        pruned = await prune(self.pool, self.retention_q, self.retention, dry_run=self.s.dry_run)
        if pruned.dry_run:
            rnd.done.add("prune_instances", "would remove", pruned.would_instances)
            rnd.done.add("prune_events", "would remove", pruned.would_events)
        else:
            rnd.done.add("prune_instances", "removed", pruned.instances)
            rnd.done.add("prune_events", "removed", pruned.events)
        if self.s.dry_run:
            rows = await self.pool.fetch(self.q.leaked_addresses, self.s.grace_s, self.s.max_actions)
            rnd.done.add("release_addresses", "would release", len(rows))
            return
        rnd.done.add("release_lb_ports", "done", len(await release_lb_ports(self.pool, self.q, self.s.lb_port_retain_s)))
        rows = await self.pool.fetch(self.q.release_leaked_addresses, self.s.grace_s, self.s.max_actions)
        if rows:
            log.warning("pool addresses released: held by instances that ended or do not exist",
                        extra={"addresses": [f"{r['address']} ({r['instance']})" for r in rows][:50], "count": len(rows)})
        rnd.done.add("release_addresses", "done", len(rows))

    async def _record(self, rnd: Round, started: datetime, v: views.Views) -> None:
        assert rnd.result is not None
        r, s = rnd.result, self.s
        for kind in KINDS:
            DRIFT.labels(kind).set(r.counts.get(kind, 0))
        HOSTS_CHECKED.set(v.hosts_asked)
        LAST_ROUND.set(time.time())
        # A finding is logged when first seen and when acted on, not every round it lasts.
        told = [f for f in r.findings if f.since >= rnd.now or f.action in ("lose", "sweep", "repair", "deferred")]
        for f in told[:20]:
            log.info("drift", extra={"kind": f.kind, "where": f.where, "instance": f.instance, "detail": f.detail,
                                     "action": f.action or "report"})
        if told or rnd.done.counts:
            log.info("round", extra={"found": {k: n for k, n in r.counts.items() if n}, "done": rnd.done.as_json(),
                                     "seconds": round(rnd.seconds, 3), "trigger": rnd.trigger})
        findings = [{"kind": f.kind, "where": f.where, "app": f.app, "instance": f.instance, "detail": f.detail,
                     "since": datetime.fromtimestamp(f.since, timezone.utc).isoformat(), "action": f.action or "report"}
                     for f in r.findings[:s.findings_kept]]
        counts = {k: n for k, n in r.counts.items() if n}
        counts.update(hosts_asked=v.hosts_asked, hosts_answered=v.hosts_answered, findings=len(r.findings))
        async with self.pool.acquire() as conn, conn.transaction():
            rnd.id = await conn.fetchval(self.q.record_round, started, self.holder, self.fence, s.dry_run, rnd.trigger,
                                         json.dumps(counts), json.dumps(findings), json.dumps(rnd.done.as_json()),
                                         json.dumps(rnd.errors), json.dumps(rnd.timings))
            await conn.execute(self.q.trim_rounds, s.rounds_kept)
