"""Feeds every sink from the task log, level-triggered.

    report batch committed (registry)  ──> touch_instances(app -> ids) ─┐
    noops.endpoints.<app> (any writer) ──> touch_instances(the ids that  ├─> dirty keys ─> read the
                                           differ from what was read)    │   task log once for the
    an app not read yet, repairs       ──> touch(app) ──────────────────┘   batch ─> each SinkRunner's
    every ``resync_s`` and at start    ──> full snapshot ─> SinkRunner.submit_full  queue (newest per app)

A touch is "look at app X (or instance Y of app X) again": the state handed to sinks is always
re-read from the task log, never taken from an event payload, so lost, repeated or reordered
events are harmless, and a sink that was down converges at the next full resync.  Sinks are
given each touched app's complete set: after a report batch only the instances it named are
read again and merged into the set read before (``_known``); reading every touched app's whole
set after every batch grew with the apps (a read of 25,000 rows per batch at 5,000 reports/s).
What another writer changes (the placer: a host DOWN) arrives as its announcement: the
instances in which it differs from what was read are read again.  The merge is right because
reads take turns (``_reading``) and every committed change touches its instances after the
commit: an instance not named has not changed since it was last read, or is named next.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

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
        self._dirty: set[str] = set()                     # apps: read whole
        self._dirty_instances: dict[str, set[str]] = {}  # app -> instances: read those, merge
        self._wake = asyncio.Event()
        self._resync_now = True
        self._last: dict[str, frozenset[tuple[str, str]]] = {}   # app -> (instance, ip) as last read
        self._known: dict[str, AppState] = {}   # app -> its state as last read or merged (handed to sinks)
        self._reading = asyncio.Lock()          # reads take turns: the merges build on the previous read

    # ------------------------------------------------------------------ key sources
    def touch(self, apps: Iterable[str]) -> None:
        # Only ids of the task log's form: a report is touched before it is screened (the wrapped
        # handler judges it), and an app id ends up in nft set names and HAProxy commands.  A
        # forged "app" would otherwise fail every batch of a sink, or be run as a command.
        self._dirty.update(a for a in apps if subjects.TOKEN_RE.fullmatch(a))
        if self._dirty:
            self._wake.set()

    def touch_instances(self, instances: Mapping[str, Iterable[str]]) -> None:
        """Look again at these instances of these apps (app -> instance ids)."""
        for app, ids in instances.items():
            if subjects.TOKEN_RE.fullmatch(app):
                self._dirty_instances.setdefault(app, set()).update(ids)
        if self._dirty_instances:
            self._wake.set()

    def resync(self) -> None:
        self._resync_now = True
        self._wake.set()

    def feeding(self, handler: bus.BatchHandler) -> bus.BatchHandler:
        """Wrap the report handler: once a batch is committed, look again at the apps it named
        (a superset of those that changed; sinks are idempotent)."""
        async def wrapped(msgs: list[Msg]) -> list[bus.Verdict]:
            verdicts = await handler(msgs)
            named: dict[str, set[str]] = defaultdict(set)
            for m in msgs:
                try:
                    r = messages.decode(m.data, messages.IpReport)
                except messages.DecodeError:
                    continue
                named[r.app].add(r.instance)
            self.touch_instances(named)
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
        # the payload may only *save* a read (same set as last read), never replace one.  Where
        # it differs, the instances it differs in are read again (a stale announcement costs a
        # read of those; one of another writer's changes is seen).
        seen = frozenset((e.instance, e.ip) for e in ev.endpoints)
        last = self._last.get(ev.app)
        if last is None:
            self.touch([ev.app])
        elif last != seen:
            self.touch_instances({ev.app: {i for i, _ in last ^ seen}})

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        next_full = self.clock()
        failures = retry.Failures(self.policy)
        while True:
            timeout = max(next_full - self.clock(), 0.0)
            if not self._dirty and not self._dirty_instances and not self._resync_now:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            try:
                if self._resync_now or self.clock() >= next_full:
                    self._resync_now = False
                    self._dirty.clear()          # keys touched before this read: contained in it
                    self._dirty_instances.clear()
                    snapshot = await self.read(None)
                    for r in self.runners:
                        r.submit_full(snapshot)
                    next_full = self.clock() + self.resync_s
                elif self._dirty or self._dirty_instances:
                    apps, self._dirty = self._dirty, set()
                    named, self._dirty_instances = self._dirty_instances, {}
                    try:
                        changes = await self.read_changes(apps, named)
                    except Exception:
                        self._dirty.update(apps)
                        for app, ids in named.items():
                            self._dirty_instances.setdefault(app, set()).update(ids)
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
    async def read_changes(self, apps: Iterable[str], named: Mapping[str, Iterable[str]]) -> dict[str, AppState]:
        """The states of ``apps`` (read whole) and of the apps in ``named`` (their named
        instances read again and merged into the set read before; read whole when there is no
        such set yet, or when an instance brings a port name without an LB port)."""
        whole = set(apps) | {a for a in named if a not in self._known}
        merge = {a: set(ids) for a, ids in named.items() if a not in whole}
        out: dict[str, AppState] = {}
        if merge:
            got = await self._read_instances(merge)
            whole |= set(merge) - set(got)   # a new port name: assigned by a whole read
            out.update(got)
        if whole:
            out.update(await self.read(sorted(whole)))
        return out

    async def _read_instances(self, named: Mapping[str, set[str]]) -> dict[str, AppState]:
        t0 = time.perf_counter()
        async with self._reading:
            async with self.pool.acquire() as conn:
                rows = await endpoints.in_service_of(conn, sorted(set().union(*named.values())))
            read_at = self.clock()
            fresh: dict[str, list[Endpoint]] = defaultdict(list)
            parsed: dict[str, dict[str, int]] = {}
            for r in rows:
                if r["app"] in named:   # a report naming another app's instance changed nothing of this one's
                    fresh[r["app"]].append(Endpoint(instance=r["id"], host=r["host"], ip=r["ip"],
                                                    ports=endpoints.ports_of(r["ports"], parsed)))
            out: dict[str, AppState] = {}
            for app, ids in named.items():
                old = self._known.get(app)
                if old is None or any(set(e.ports) - set(old.lb) for e in fresh.get(app, ())):
                    continue   # left to a whole read
                eps = [e for e in old.endpoints if e.instance not in ids] + fresh.get(app, [])
                eps.sort(key=_instance)
                out[app] = self._known[app] = AppState(app, tuple(eps), old.lb, read_at)
                self._last[app] = frozenset((e.instance, e.ip) for e in eps)
        READS.labels("instances").observe(time.perf_counter() - t0)
        return out

    async def read(self, apps: list[str] | None) -> dict[str, AppState]:
        """The in-service set and LB ports of ``apps`` (None: every app), assigning LB ports to
        port names that have none yet."""
        async with self._reading:
            return await self._read(apps)

    async def _read(self, apps: list[str] | None) -> dict[str, AppState]:
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
        if apps is None:
            self._known, self._last = {}, {}   # apps gone from the task log are forgotten too
        out = {a: AppState(a, tuple(eps.get(a, ())), dict(lb.get(a, {})), read_at) for a in sorted(keys)}
        for a, state in out.items():
            self._last[a] = frozenset((e.instance, e.ip) for e in state.endpoints)
            self._known[a] = state
        return out

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


def _instance(e: Endpoint) -> str:
    return e.instance
