"""Choosing hosts for N identical instances of one app: feasibility filters, then ranking,
then a greedy fill — all vectorized over the hosts, with a named count for every rejection.

Order matters and is fixed here (like Nomad's feasibility chain): first what a host *is*
(down/draining/cordoned, attribute constraints), then what it *has* (free cpus, memory, disk,
egress, addresses, host ports), then how many of this app it may still take (UNIQUE/MAX_PER/GROUP_BY).
The reasons of the first filter that rejects a host are the ones reported, so the counts add
up to the number of hosts.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from libs.constraints import Constraint
from services.placer.snapshot import Scratch

NOT_UP = "host down"
DRAINING = "host draining"
CORDONED = "host cordoned"
NO_HOSTS = "no host online"


@dataclass(frozen=True)
class Request:
    app: str
    count: int
    cpus: float
    mem_mb: float
    disk_mb: float = 0.0
    egress_mbit: float = 0.0
    constraints: tuple[Constraint, ...] = ()
    strategy: str = "binpack"                 # or "spread"
    existing: tuple[int, ...] = ()            # host index of each live instance of the app
    host_ports: tuple[int, ...] = ()          # ports each instance needs on its host's own address


@dataclass(frozen=True)
class Choice:
    hosts: np.ndarray                          # host index per placed instance
    reasons: dict[str, int] = field(default_factory=dict)  # filled only when some did not fit

    @property
    def placed(self) -> int:
        return len(self.hosts)


def _fmt(x: float) -> str:
    return f"{x:g}"


def choose(scratch: Scratch, req: Request, *, seed: int) -> Choice:
    """Pick hosts for ``req.count`` instances and reserve them in ``scratch``."""
    snap = scratch.snap
    n = len(snap)
    if req.count <= 0:
        return Choice(np.empty(0, dtype=np.int64))
    if n == 0:
        return Choice(np.empty(0, dtype=np.int64), {NO_HOSTS: 0})
    reasons: Counter[str] = Counter()
    mask = np.ones(n, dtype=bool)

    def reject(bad: np.ndarray, why: str) -> None:
        newly = mask & bad
        k = int(newly.sum())
        if k:
            reasons[why] += k
            mask[newly] = False

    reject(snap.down, NOT_UP)
    reject(snap.draining, DRAINING)
    reject(snap.cordoned, CORDONED)

    existing = np.asarray(req.existing, dtype=np.int64)
    cluster_pick: Constraint | None = None
    for c in req.constraints:
        codes, values = snap.attribute(c.attribute)
        if c.operator in ("LIKE", "UNLIKE"):
            rx = re.compile(c.value)
            hit = np.array([rx.fullmatch(v) is not None for v in values], dtype=bool)[codes]
            if c.operator == "LIKE":
                reject(~hit, f"{c.attribute} not LIKE {c.value}")
            else:
                # A host without the attribute cannot match, so UNLIKE admits it (Marathon's rule).
                reject(hit & (values[codes] != ""), f"{c.attribute} UNLIKE {c.value}")
        elif c.operator == "CLUSTER":
            if c.value:
                reject(values[codes] != c.value, f"{c.attribute} not {c.value} (CLUSTER)")
            elif len(existing):
                reject(codes != codes[existing[0]], f"{c.attribute} not where the app runs (CLUSTER)")
            else:
                cluster_pick = c

    # Resources: how many instances each host can still take, per resource.
    fit = np.full(n, float(req.count))
    for key, cap, need, why in (
            ("cpus", snap.cpus, req.cpus, f"needs {_fmt(req.cpus)} cpus"),
            ("mem", snap.mem, req.mem_mb, f"needs {_fmt(req.mem_mb)} MiB memory"),
            ("disk", snap.disk, req.disk_mb, f"needs {_fmt(req.disk_mb)} MiB disk"),
            ("egress", snap.egress, req.egress_mbit, f"needs {_fmt(req.egress_mbit)} Mbit/s egress"),
            ("addresses", snap.addresses, 1.0, "no free container address")):
        if need <= 0:
            continue
        k = np.floor((cap - scratch.used[key]) / need + 1e-9)
        reject(k < 1, why)
        np.minimum(fit, k, out=fit)
    # A host port is a resource of one: one instance per host, and none where it is taken.
    for port in req.host_ports:
        reject(scratch.port_taken(port), f"host port {port} in use")
    if req.host_ports:
        np.minimum(fit, 1.0, out=fit)

    # Per-host caps from hostname constraints; per-value caps from the others.
    group_caps: list[tuple[np.ndarray, np.ndarray]] = []  # (codes per host, remaining per value)
    for c in req.constraints:
        if c.operator not in ("UNIQUE", "MAX_PER", "GROUP_BY"):
            continue
        codes, values = snap.attribute(c.attribute)
        have = np.bincount(codes[existing], minlength=len(values)) if len(existing) else np.zeros(len(values))
        if c.operator == "UNIQUE":
            limit = np.ones(len(values))
        elif c.operator == "MAX_PER":
            limit = np.full(len(values), float(c.number))
        else:
            # Spread evenly: no value may get more than its share of the final total.
            present = np.unique(codes[snap.down == False])  # noqa: E712 - numpy mask
            nvals = c.number or max(len(present), 1)
            limit = np.full(len(values), float(math.ceil((len(existing) + req.count) / nvals)))
        remaining = limit - have
        if c.attribute != "hostname":
            # A host without the attribute is in no group: it cannot take part in this spread.
            remaining[values == ""] = 0
        reject(remaining[codes] < 1, f"{c.operator} {c.attribute}" + (f" {c.value}" if c.value else "")
               + ": value taken")
        group_caps.append((codes, remaining.copy()))

    candidates = np.flatnonzero(mask)
    if len(candidates) == 0:
        return Choice(np.empty(0, dtype=np.int64), dict(reasons))

    # Rank: bin-packing fills the most-used host first (utilization), spread the least-used.
    util = (scratch.used["cpus"][candidates] / np.maximum(snap.cpus[candidates], 1e-9)
            + scratch.used["mem"][candidates] / np.maximum(snap.mem[candidates], 1e-9))
    tiebreak = np.random.default_rng(seed).random(len(candidates))
    key = -util if req.strategy == "binpack" else util
    order = candidates[np.lexsort((tiebreak, key))]

    if cluster_pick is not None:
        codes, _ = snap.attribute(cluster_pick.attribute)
        order = order[codes[order] == codes[order[0]]]

    picked = _fill(order, fit, group_caps, req.count, spread=req.strategy == "spread")
    hosts = np.asarray(picked, dtype=np.int64)
    if len(hosts):
        scratch.reserve(hosts, cpus=req.cpus, mem_mb=req.mem_mb, disk_mb=req.disk_mb, egress_mbit=req.egress_mbit)
        scratch.reserve_ports(hosts, req.host_ports)
    if len(hosts) < req.count:
        if not reasons:
            reasons["every feasible host is full or its group taken"] = len(candidates)
        return Choice(hosts, dict(reasons))
    return Choice(hosts)


def _fill(order: np.ndarray, fit: np.ndarray, group_caps: list[tuple[np.ndarray, np.ndarray]], count: int,
          *, spread: bool) -> list[int]:
    """Greedy fill in rank order.  Bin-packing gives each host all it can take; spread gives one
    per host per round.  Only the hosts actually used are touched in Python."""
    picked: list[int] = []
    taken: dict[int, int] = {}
    rounds = 1 if not spread else count
    for _ in range(rounds):
        progress = False
        for h in order.tolist():
            room = int(fit[h]) - taken.get(h, 0)
            for codes, remaining in group_caps:
                room = min(room, int(remaining[codes[h]]))
            if room <= 0:
                continue
            k = min(room, count - len(picked), 1 if spread else room)
            for codes, remaining in group_caps:
                remaining[codes[h]] -= k
            taken[h] = taken.get(h, 0) + k
            picked.extend([h] * k)
            progress = True
            if len(picked) >= count:
                return picked
        if not progress:
            break
    return picked
