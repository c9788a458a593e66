"""The placer's pure core: (snapshot of one app and the hosts, seed) -> Plan.  No I/O.

Walking-skeleton scheduler: feasibility on cpus and memory, then the least-loaded feasible
host (fewest instances), ties broken by a shuffle seeded from the request, so the same input
gives the same plan.  Every rejected host is counted under a named reason so "nothing fits"
can be explained.  The placer issue replaces the ranking with real bin-packing and constraints.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from libs.messages import TERMINAL

NO_HOSTS = "no host online"
CPUS = "not enough free cpus"
MEMORY = "not enough free memory"


@dataclass(frozen=True)
class HostView:
    id: str
    cpus: float
    mem_mb: int
    cpus_used: float = 0.0
    mem_used: int = 0
    instances: int = 0


@dataclass(frozen=True)
class InstanceView:
    id: str
    version: int
    host: str
    state: str
    desired: str
    seq: int  # creation order: higher is newer


@dataclass(frozen=True)
class AppView:
    id: str
    version: int
    instances: int
    deleted: bool
    cpus: float
    mem_mb: int
    # Versions whose container spec equals the current one (a pure scale keeps its instances).
    compatible_versions: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Plan:
    place: tuple[str, ...] = ()           # one host id per new instance
    stop: tuple[str, ...] = ()            # instance ids to stop
    unplaced: int = 0                     # instances that fit nowhere now
    reasons: Mapping[str, int] = field(default_factory=dict)  # why hosts were rejected

    def explain(self) -> str:
        if not self.unplaced:
            return ""
        detail = "; ".join(f"{why}: {n} host{'s' if n != 1 else ''}" for why, n in sorted(self.reasons.items()))
        return f"{self.unplaced} instance{'s' if self.unplaced != 1 else ''} cannot be placed ({detail or NO_HOSTS})"


def active(instances: Sequence[InstanceView]) -> list[InstanceView]:
    return [i for i in instances if i.desired == "RUNNING" and i.state not in TERMINAL]


def decide(app: AppView, instances: Sequence[InstanceView], hosts: Sequence[HostView], *, seed: int) -> Plan:
    live = active(instances)
    if app.deleted:
        return Plan(stop=tuple(i.id for i in live))
    current = {app.version} | set(app.compatible_versions)
    stale = [i for i in live if i.version not in current]
    keep = sorted((i for i in live if i.version in current), key=lambda i: i.seq)
    stop = [i.id for i in stale]
    if len(keep) > app.instances:
        # Scale down: the newest go first.
        stop += [i.id for i in keep[app.instances:]]
        keep = keep[: app.instances]
    need = app.instances - len(keep)
    if need <= 0:
        return Plan(stop=tuple(stop))
    placed, reasons = place(hosts, app.cpus, app.mem_mb, need, seed=seed)
    return Plan(place=tuple(placed), stop=tuple(stop), unplaced=need - len(placed), reasons=reasons)


def place(hosts: Sequence[HostView], cpus: float, mem_mb: int, count: int, *,
          seed: int) -> tuple[list[str], dict[str, int]]:
    """Choose a host for each of ``count`` identical instances, reserving as it goes."""
    order = list(hosts)
    random.Random(seed).shuffle(order)
    free = {h.id: [h.cpus - h.cpus_used, h.mem_mb - h.mem_used, h.instances] for h in order}
    chosen: list[str] = []
    reasons: Counter[str] = Counter()
    for _ in range(count):
        best = None
        reasons = Counter()
        for h in order:
            f = free[h.id]
            if f[0] + 1e-9 < cpus:
                reasons[CPUS] += 1
            elif f[1] < mem_mb:
                reasons[MEMORY] += 1
            elif best is None or f[2] < free[best][2]:
                best = h.id
        if best is None:
            if not order:
                reasons[NO_HOSTS] = 0
            break
        f = free[best]
        f[0] -= cpus
        f[1] -= mem_mb
        f[2] += 1
        chosen.append(best)
    return chosen, dict(reasons) if len(chosen) < count else {}
