"""Applies a batch of accepted IP reports to the task log, marks the apps whose in-service set
changed (announced by announcer.py after the commit) and writes the deploy requests, all in one
transaction (outbox), so a crash loses nothing and a redelivered batch changes nothing."""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import msgspec
from nats.aio.msg import Msg
from prometheus_client import Counter

from libs import announce, bus, ipam, messages, outbox, subjects
from libs.db import Queries
from services.registry.announcer import Announcer
from services.registry.judge import Row, fresh_health, in_service, judge
from services.registry.screen import Ranges, screen

log = logging.getLogger("noops.registry")

ACCEPTED = Counter("noops_registry_reports_accepted_total", "IP reports accepted", ["changed"])
REJECTED = Counter("noops_registry_reports_rejected_total", "IP reports rejected", ["reason"])
# The children, looked up once: ``labels()`` per report was 5% of the registry's CPU at 5,000/s.
_ACCEPTED = {changed: ACCEPTED.labels(str(changed).lower()) for changed in (False, True)}


@dataclass(frozen=True)
class Parsed:
    msg: Msg
    report: messages.IpReport | None   # None: malformed or screened out
    screened: bool = False             # well-formed but false in form (screen.py): acked, not poison


class Records:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, relay: outbox.Relay, announcer: Announcer, *,
                 ranges: Ranges = Ranges(), clock: Callable[[], float] = time.time) -> None:
        self.pool, self.q, self.relay, self.announcer = pool, queries, relay, announcer
        self.ranges, self.clock = ranges, clock

    async def handle_batch(self, msgs: list[Msg]) -> list[bus.Verdict]:
        parsed: list[Parsed] = []
        for m in msgs:
            try:
                parsed.append(Parsed(m, messages.decode(m.data, messages.IpReport)))
            except messages.DecodeError as exc:
                REJECTED.labels("malformed").inc()
                log.warning("rejected malformed report", extra={"subject": m.subject, "error": str(exc)})
                parsed.append(Parsed(m, None))
                continue
            r = parsed[-1].report
            assert r is not None
            bad = screen(r, self.ranges)
            if bad is not None:
                # Well-formed JSON with a false field: done with (ack below), never judged, never
                # written, so no sink sees it.
                REJECTED.labels(bad.reason).inc()
                log.warning("rejected report", extra={"subject": m.subject, "reason": bad.reason,
                                                      "field": bad.field, "value": bad.value})
                parsed[-1] = Parsed(m, None, screened=True)
        reports = [p.report for p in parsed if p.report is not None]
        if reports:
            await self._apply(parsed)
        # A malformed message is poison (term: never redeliver); a well-formed report that was
        # screened out or judged false is done with (ack), counted and logged above.
        return [bus.ACK if p.report is not None or p.screened else bus.TERM for p in parsed]

    async def _apply(self, parsed: list[Parsed]) -> None:
        """Judge the batch against the instances as read, unlocked, and write it in one statement
        that holds only if none of the rows it changes moved meanwhile (record_batch): two round
        trips instead of four (BEGIN, lock, write, COMMIT), and nothing held while judging.  When
        a row did move (a concurrent batch or writer got there first), the batch is judged again
        with its rows locked, against what they hold now."""
        ids = sorted({p.report.instance for p in parsed if p.report})
        at = self.clock()
        async with self.pool.acquire() as conn:
            rows = {r["id"]: r for r in await conn.fetch(self.q.read_instances, ids)}
            plan = self._plan(parsed, rows, at)
            try:
                if plan.ended:   # more than one statement: a transaction, still checked
                    async with conn.transaction():
                        await self._write(conn, plan)
                else:
                    await self._write(conn, plan)
            except _MOVED:
                MOVED.inc()
                async with conn.transaction():
                    await conn.execute(self.q.lock_instances, ids)
                    rows = {r["id"]: r for r in await conn.fetch(self.q.read_instances, ids)}
                    plan = self._plan(parsed, rows, at)
                    await self._write(conn, plan)
        plan.count()
        if plan.touched_apps:
            self.announcer.kick()
        if plan.respawn_apps:
            self.relay.kick()

    def _plan(self, parsed: list[Parsed], read: dict[str, asyncpg.Record], at: float) -> "Plan":
        """What the batch writes, judged against ``read`` (no I/O; the counters and log lines wait
        for ``Plan.count``, so a batch judged twice is counted once)."""
        plan = Plan()
        # read_instances' columns are Row's fields in order, then the row version (a test holds
        # them to it).
        rows = {i: Row(*tuple(r)[:-1]) for i, r in read.items()}
        versions = {i: r[-1] for i, r in read.items()}
        updates: dict[str, messages.IpReport] = {}
        health_times: dict[str, float] = {}
        events = plan.events
        # The same transitions as change events (docs/events.md), built here rather than by
        # the trigger: JSON in PostgreSQL cost more than the rest of the batch's writes.
        changes: list[messages.InstanceEvent] = []
        for p in parsed:
            r = p.report
            if r is None:
                continue
            row = rows.get(r.instance)
            v = judge(r, subjects.host_of(p.msg.subject), row)
            if not v.accepted:
                plan.rejected.append((v.reason, r.instance, r.host, p.msg.subject))
                continue
            plan.accepted[v.changed] += 1
            if not v.changed:
                # The same RUNNING fact with a renewed DHCP lease: only the lease moves.
                if (row is not None and r.lease_expires > 0 and r.state == row.state == "RUNNING"
                        and r.ip == row.ip and r.container_id == row.container_id):
                    plan.leases[r.instance] = r.lease_expires
                continue
            assert row is not None
            fresh = fresh_health(r, row)
            healthy, health = (r.healthy, r.health) if fresh else (row.healthy, row.health)
            health_at = r.at if fresh else row.health_at
            was = in_service(row.state, row.healthy, row.has_checks)
            now = in_service(r.state, healthy, row.has_checks)
            if was != now or (now and r.ip != row.ip):
                plan.touched_apps.add(r.app)
            # The placer looks again at once when an instance ends while wanted (replace it).
            # When one starts serving (the next rolling-update step may be due) the app's set
            # changed, so it is marked above and the announcer asks for the look, once a round
            # (announcer.py): a big app coming up is then looked at once per round instead of
            # once per batch, and each look re-reads all its live instances.
            if r.state in messages.TERMINAL and row.desired == "RUNNING":
                plan.respawn_apps.add(r.app)
            verdict = None if healthy is None else ("healthy" if healthy else "unhealthy")
            if v.state_changed:
                events.append((r.instance, r.state, r.reason))
            if v.health_changed:
                events.append((r.instance, r.state, f"{'healthy' if healthy else 'unhealthy'}: {health}"))
            for _, state, why in events[len(changes):]:
                changes.append(messages.InstanceEvent(
                    app=row.app, instance=r.instance, host=row.host, state=state, epoch=row.epoch,
                    version=row.version, at=at, health=verdict, ip=r.ip, desired=row.desired,  # type: ignore[arg-type]
                    reason=why[:512]))
            # A batch may hold a health report and then a lease renewal without health news:
            # the later one carries the health written by the earlier.
            updates[r.instance] = msgspec.structs.replace(r, healthy=healthy, health=health)
            health_times[r.instance] = health_at
            # Later reports in the same batch are judged against what this one wrote.
            rows[r.instance] = msgspec.structs.replace(row, state=r.state, ip=r.ip, container_id=r.container_id,
                                                       healthy=healthy, health=health, health_at=health_at)
        # In id order: concurrent statements take the row locks in the same order.
        plan.updates = [updates[i] for i in sorted(updates)]
        plan.health_times = [health_times[i] for i in sorted(updates)]
        plan.versions = [versions[i] for i in sorted(updates)]
        plan.deploys = outbox.columns([*((subjects.deploy(app), f"deploy:{app}:{uuid.uuid4().hex}",
                                          messages.DeployRequest(app=app, reason="instance state changed"))
                                         for app in sorted(plan.respawn_apps)),
                                       *announce.instance_events(changes)])
        # An instance that ended gives its pool address back (IPAM mode "pool").
        plan.ended = [u.instance for u in plan.updates if u.state in messages.TERMINAL]
        return plan

    async def _write(self, conn: asyncpg.Connection, plan: "Plan") -> None:
        us, events = plan.updates, plan.events
        # Not the sets themselves: reading a big app's whole set in every batch was the
        # registry's main cost under load; the announcer reads it once per round.
        marks = sorted(plan.touched_apps)
        if us or events or marks or plan.deploys[0]:
            ev = list(zip(*events)) or [(), (), ()]
            await conn.execute(self.q.record_batch, [u.instance for u in us], [u.state for u in us],
                               [u.ip for u in us], [u.container_id for u in us], [u.reason for u in us],
                               [u.mac for u in us], [u.parent for u in us], [u.lease_expires for u in us],
                               [u.healthy for u in us], [u.health for u in us],
                               list(ev[0]), list(ev[1]), list(ev[2]), marks, *plan.deploys, outbox.CHANNEL,
                               plan.health_times, plan.versions)
        if plan.ended:
            await ipam.release(conn, plan.ended)
        # After the facts: a renewal later in the batch than a changed report moves the lease on
        # (forward only, so it needs no check of its own).
        if plan.leases:
            await conn.execute(self.q.renew_leases, list(plan.leases), list(plan.leases.values()))


# A row of the batch moved between the read and the write (record_batch's check), or two
# unlocked batches met in a deadlock: judge again, locked.
_MOVED = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)
MOVED = Counter("noops_registry_batches_rejudged_total",
                "Report batches judged again with their instances locked (a row changed after it was read)")


@dataclass
class Plan:
    """A report batch's writes, as judged (Records._plan)."""
    updates: list[messages.IpReport] = field(default_factory=list)   # in instance id order
    health_times: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)                # row versions the updates hold for
    events: list[tuple[str, str, str]] = field(default_factory=list)
    touched_apps: set[str] = field(default_factory=set)
    respawn_apps: set[str] = field(default_factory=set)
    leases: dict[str, float] = field(default_factory=dict)
    deploys: tuple[list[str], list[str], list[bytes]] = field(default_factory=lambda: ([], [], []))
    ended: list[str] = field(default_factory=list)
    accepted: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    rejected: list[tuple[str, str, str, str]] = field(default_factory=list)   # reason, instance, host, subject

    def count(self) -> None:
        for changed, n in self.accepted.items():
            if n:
                _ACCEPTED[changed].inc(n)
        for reason, instance, host, subject in self.rejected:
            REJECTED.labels(reason).inc()
            log.warning("rejected report", extra={"instance": instance, "host": host, "subject": subject,
                                                  "reason": reason})
