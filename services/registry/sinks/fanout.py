"""Feeds every sink from the task log, level-triggered.

    report batch committed (registry)  ─┐
    noops.endpoints.<app> (any writer) ─┼─> touch(app) ─> dirty keys ─> read task log once for the
    every ``resync_s`` and at start    ─┘   batch ─> each SinkRunner's queue (newest state per app)
                                            full snapshot ─> each SinkRunner.submit_full

A touch is "look at app X again": the state handed to sinks is always re-read from the task log,
never taken from an event payload, so lost, repeated or reordered events are harmless, and a
sink that was down converges at the next full resync.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import asyncpg
from nats.aio.msg import Msg
from prometheus_client import Counter, Histogram

from libs import bus, endpoints, messages, retry, subjects
from libs.db import Queries
from libs.messages import Endpoint
from services.registry.sinks.model import AppState, LbPort
from services.registry.sinks.runner import SinkRunner

log = logging.getLogger("noops.registry.sinks")

READS = Histogram("noops_registry_fanout_read_seconds", "Reading the in-service set for the sinks", ["kind"],
                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
NO_PORT = Counter("noops_registry_lb_ports_exhausted_total", "Port names left without an LB port (range full)")


class Fanout:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, runners: Sequence[SinkRunner], *,
                 lb_bind_host: str, lb_port_range: tuple[int, int], resync_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, policy: retry.Policy = retry.DEFAULT) -> None:
        self.pool, self.q, self.runners, self.policy = pool, queries, list(runners), policy
        self.lb_bind_host, self.lb_port_range, self.resync_s, self.clock = lb_bind_host, lb_port_range, resync_s, clock
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._resync_now = True
        self._last: dict[str, frozenset[tuple[str, str]]] = {}   # app -> (instance, ip) as last read

    # ------------------------------------------------------------------ key sources
    def touch(self, apps: Iterable[str]) -> None:
        # Only ids of the task log's form: a report is touched before it is screened (the wrapped
        # handler judges it), and an app id ends up in nft set names and HAProxy commands.  A
        # forged "app" would otherwise fail every batch of a sink, or be run as a command.
        self._dirty.update(a for a in apps if subjects.TOKEN_RE.fullmatch(a))
        if self._dirty:
            self._wake.set()

    def resync(self) -> None:
        self._resync_now = True
        self._wake.set()

    def feeding(self, handler: bus.BatchHandler) -> bus.BatchHandler:
        """Wrap the report handler: once a batch is committed, look again at the apps it named
        (a superset of those that changed; sinks are idempotent)."""
        async def wrapped(msgs: list[Msg]) -> list[bus.Verdict]:
            verdicts = await handler(msgs)
            apps = set()
            for m in msgs:
                try:
                    apps.add(messages.decode(m.data, messages.IpReport).app)
                except messages.DecodeError:
                    continue
            self.touch(apps)
            return verdicts
        return wrapped

    async def on_endpoints(self, msg: Msg) -> None:
        """Core-NATS callback for noops.endpoints.*: another writer (the placer on a host going
        DOWN) changed a set; only the app id is used."""
        try:
            ev = messages.decode(msg.data, messages.EndpointsChanged)
        except messages.DecodeError:
            log.warning("ignored malformed EndpointsChanged", extra={"subject": msg.subject})
            return
        # Most of these are the registry's own announcements of what it just handed the sinks:
        # the payload may only *save* a read (same set as last read), never replace one.
        if self._last.get(ev.app) != frozenset((e.instance, e.ip) for e in ev.endpoints):
            self.touch([ev.app])

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        next_full = self.clock()
        failures = retry.Failures(self.policy)
        while True:
            timeout = max(next_full - self.clock(), 0.0)
            if not self._dirty and not self._resync_now:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            try:
                if self._resync_now or self.clock() >= next_full:
                    self._resync_now = False
                    self._dirty.clear()
                    snapshot = await self.read(None)
                    for r in self.runners:
                        r.submit_full(snapshot)
                    next_full = self.clock() + self.resync_s
                elif self._dirty:
                    apps, self._dirty = sorted(self._dirty), set()
                    try:
                        changes = await self.read(apps)
                    except Exception:
                        self._dirty.update(apps)
                        raise
                    for r in self.runners:
                        r.submit(changes)
                failures.ok()
            except retry.TRANSIENT as exc:   # the task log is away: keep the keys, back off
                delay = failures.failed()
                log.warning("fan-out read failed; retrying", extra={"error": retry.describe(exc),
                                                                   "retry_in_s": round(delay, 2)})
                self._resync_now = True
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------ reading the task log
    async def read(self, apps: list[str] | None) -> dict[str, AppState]:
        """The in-service set and LB ports of ``apps`` (None: every app), assigning LB ports to
        port names that have none yet."""
        t0 = time.perf_counter()
        async with self.pool.acquire() as conn:
            eps: dict[str, list[Endpoint]] = defaultdict(list)
            names: dict[str, set[str]] = defaultdict(set)
            parsed: dict[str, dict[str, int]] = {}
            for r in await endpoints.in_service(conn, apps):
                ports = endpoints.ports_of(r["ports"], parsed)
                eps[r["app"]].append(Endpoint(instance=r["id"], host=r["host"], ip=r["ip"], ports=ports))
                names[r["app"]].update(ports)
            for r in await conn.fetch(self.q.sinks_apps, apps):
                names[r["id"]].update(p["name"] for p in json.loads(r["ports"] or "[]"))
            lb: dict[str, dict[str, LbPort]] = defaultdict(dict)
            for r in await conn.fetch(self.q.sinks_lb_ports, apps):
                lb[r["app"]][r["port_name"]] = LbPort(r["bind_host"], r["port"])
            for app in sorted(names):
                for pname in sorted(names[app] - set(lb[app])):
                    got = await self._assign(conn, app, pname)
                    if got is not None:
                        lb[app][pname] = got
            read_at = self.clock()
        READS.labels("all" if apps is None else "apps").observe(time.perf_counter() - t0)
        keys = set(apps or ()) | set(names) | set(lb) | set(eps)
        for a in keys:
            self._last[a] = frozenset((e.instance, e.ip) for e in eps.get(a, ()))
        return {a: AppState(a, tuple(eps.get(a, ())), dict(lb.get(a, {})), read_at) for a in sorted(keys)}

    async def _assign(self, conn: asyncpg.Connection, app: str, pname: str) -> LbPort | None:
        lo, hi = self.lb_port_range
        row = await conn.fetchrow(self.q.assign_lb_port, app, pname, self.lb_bind_host, lo, hi)
        if row is None:   # taken meanwhile, or the range is full
            for r in await conn.fetch(self.q.sinks_lb_ports, [app]):
                if r["port_name"] == pname:
                    return LbPort(r["bind_host"], r["port"])
            NO_PORT.inc()
            log.error("no free LB port", extra={"app": app, "port_name": pname, "range": f"{lo}-{hi}"})
            return None
        log.info("assigned LB port", extra={"app": app, "port_name": pname, "port": row["port"]})
        return LbPort(row["bind_host"], row["port"])
