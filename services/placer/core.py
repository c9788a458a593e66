"""The placer's pure core: (an app's task-log state, the cluster snapshot, seed) -> Plan.  No I/O.

``decide`` works out what the app needs — instances to stop (deleted app, scale down, rolling
update, drained hosts) and how many to start — and ``placement.choose`` picks the hosts.
Rolling updates follow Marathon's knobs: old instances are stopped only while enough healthy
ones remain (minimum_health_capacity) and new ones start only while the total stays within
maximum_over_capacity.  "Healthy" is "in service" (noops_in_service, migration 0006): RUNNING,
and passing its health checks when the version has any.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from libs.constraints import Constraint
from libs.messages import TERMINAL
from services.placer.placement import NO_HOSTS, Request, choose
from services.placer.snapshot import Scratch


class InstanceView(NamedTuple):
    """One live instance as a decision sees it.  A named tuple, not a frozen dataclass: a look at
    an app builds one per live instance (100,000 for a big deployment), and a frozen dataclass
    costs ~1.3 us each to build against ~0.3 us."""
    id: str
    version: int
    host: str
    state: str
    desired: str
    seq: int  # creation order: higher is newer
    doomed: bool = False  # an operator asked for this one to go
    in_service: bool | None = None  # from the task log; None: RUNNING counts (no health checks)

    @property
    def serving(self) -> bool:
        return self.state == "RUNNING" if self.in_service is None else self.in_service


@dataclass(frozen=True)
class AppView:
    id: str
    version: int
    instances: int
    deleted: bool
    cpus: float
    mem_mb: float
    disk_mb: float = 0.0
    egress_mbit: float = 0.0
    constraints: tuple[Constraint, ...] = ()
    strategy: str = "binpack"
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0
    # Versions whose container spec equals the current one (a pure scale keeps its instances).
    compatible_versions: frozenset[int] = frozenset()
    paused: bool = False        # deployment paused or cancelled: no version transition steps
    may_launch: bool = True     # False while a crash-loop backoff delay runs
    host_ports: tuple[int, ...] = ()  # ports each instance holds on its host


@dataclass(frozen=True)
class Plan:
    place: tuple[str, ...] = ()           # one host id per new instance
    stop: tuple[str, ...] = ()            # instance ids to stop
    unplaced: int = 0                     # instances that fit nowhere now
    reasons: Mapping[str, int] = field(default_factory=dict)  # why hosts were rejected
    new_running: int = 0                  # progress of the deployment, for its record
    old_live: int = 0

    @property
    def converged(self) -> bool:
        return not self.place and not self.stop and not self.unplaced and not self.old_live

    def explain(self) -> str:
        if not self.unplaced:
            return ""
        parts = "; ".join(f"{why}: {n} host{'s' if n != 1 else ''}" if n else why
                          for why, n in sorted(self.reasons.items(), key=lambda kv: -kv[1]))
        plural = "s" if self.unplaced != 1 else ""
        return f"{self.unplaced} instance{plural} waiting for room ({parts or NO_HOSTS})"


def active(instances: Sequence[InstanceView]) -> list[InstanceView]:
    return [i for i in instances if i.desired == "RUNNING" and i.state not in TERMINAL]


def decide(app: AppView, instances: Sequence[InstanceView], scratch: Scratch, *, seed: int,
           draining: frozenset[str] = frozenset()) -> Plan:
    live = active(instances)
    if app.deleted:
        return Plan(stop=tuple(i.id for i in live))
    stop = [i.id for i in live if i.doomed]
    live = [i for i in live if not i.doomed]
    current = {app.version} | set(app.compatible_versions)
    new = sorted((i for i in live if i.version in current and i.host not in draining), key=lambda i: i.seq)
    old = [i for i in live if i.version not in current or i.host in draining]
    n = app.instances
    if len(new) > n:
        # Scale down: the newest go first.
        stop += [i.id for i in new[n:]]
        new = new[:n]

    new_running = sum(i.serving for i in new)
    if old and not app.paused:
        # Old instances that are not serving can go at once; serving ones only while enough
        # healthy instances remain.  Oldest first.
        min_healthy = math.ceil(n * app.minimum_health_capacity)
        old_running = [i for i in old if i.serving]
        old_other = [i for i in old if not i.serving]
        stop += [i.id for i in old_other]
        can_kill = max(0, new_running + len(old_running) - min_healthy)
        killed = sorted(old_running, key=lambda i: i.seq)[:can_kill]
        stop += [i.id for i in killed]
        old = [i for i in old_running if i not in killed]
    max_total = n + math.floor(n * app.maximum_over_capacity)
    want = n - len(new)
    if app.paused and old:
        want = 0
    room = max_total - len(new) - len(old)
    start = max(0, min(want, room)) if app.may_launch else 0
    if start == 0 and want > 0 and room <= 0 and old and not app.paused:
        # minimum_health_capacity 1 with maximum_over_capacity 0 could never move: replace one at a time.
        start = 1 if app.may_launch else 0
    if start == 0:
        return Plan(stop=tuple(stop), new_running=new_running, old_live=len(old))
    req = Request(app=app.id, count=start, cpus=app.cpus, mem_mb=app.mem_mb, disk_mb=app.disk_mb,
                  egress_mbit=app.egress_mbit, constraints=app.constraints, strategy=app.strategy,
                  host_ports=app.host_ports,
                  existing=tuple(scratch.snap.index[i.host] for i in new + old if i.host in scratch.snap.index))
    choice = choose(scratch, req, seed=seed)
    ids = scratch.snap.ids
    return Plan(place=tuple(ids[h] for h in choice.hosts.tolist()), stop=tuple(stop),
                unplaced=start - choice.placed, reasons=choice.reasons, new_running=new_running, old_live=len(old))
