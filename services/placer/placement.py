"""Choosing hosts for N identical instances of one app: feasibility filters, then ranking,
then a greedy fill — vectorized over a sample of the hosts (``sampling.py``: the cost of a
decision does not grow with the cluster), with a named count for every rejection.

Order matters and is fixed here (like Nomad's feasibility chain): first what a host *is*
(down/draining/cordoned, attribute constraints), then what it *has* (free cpus, memory, disk,
egress, addresses, host ports), then how many of this app it may still take (UNIQUE/MAX_PER/GROUP_BY).
The reasons of the first filter that rejects a host are the ones reported, so the counts add
up to the number of hosts (a request that does not fit has looked at every host).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from libs.constraints import Constraint
from services.placer.sampling import window
from services.placer.snapshot import ClusterSnapshot, Scratch

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
    visited: int = 0                           # hosts the decision looked at (its cost)

    @property
    def placed(self) -> int:
        return len(self.hosts)


def _fmt(x: float) -> str:
    return f"{x:g}"


def choose(scratch: Scratch, req: Request, *, seed: int) -> Choice:
    """Pick hosts for ``req.count`` instances and reserve them in ``scratch``.

    Only a sample of the hosts is scored (``sampling.py``), as many as it takes to find ``wanted``
    feasible hosts that take the whole request: for bin-packing the tightest fits from the
    scratch's free-capacity index (``freeindex.py``), for spread a window of the snapshot's
    shuffled order from a start drawn from ``seed``, at least one host per instance.  When they do
    not take it all, the sample grows, up to every host: then the reasons count every host, exactly.
    """
    snap = scratch.snap
    n = len(snap)
    if req.count <= 0:
        return Choice(np.empty(0, dtype=np.int64))
    if n == 0:
        return Choice(np.empty(0, dtype=np.int64), {NO_HOSTS: 0})
    rng = np.random.default_rng(seed)
    start = int(rng.integers(n))
    wanted = scratch.sampling.wanted(n)
    binpack = req.strategy != "spread"
    if not binpack:
        wanted = min(n, max(wanted, req.count))
    size = wanted
    while True:
        hosts, seen_all_that_fit = None, False
        if size < n and binpack:
            # The fullest hosts that fit, by the request's dominant resource (freeindex.py).
            key, need = _dominant(snap, req)
            hosts = scratch.free_index(key).fitting(need, size)
            seen_all_that_fit = len(hosts) < size
        elif size < n:
            hosts = window(snap.order, start, size)
        p = _evaluate(scratch, req, hosts, rng)
        done = len(p.hosts) == req.count
        if hosts is None or (done and (p.feasible >= wanted or seen_all_that_fit)):
            break
        if seen_all_that_fit:
            size = n  # not enough room anywhere: count every host's reason
            continue
        # Look further, by what was missing: feasible hosts, or room for the request.
        short = max(wanted / max(p.feasible, 1), req.count / max(len(p.hosts), 1))
        size = min(n, math.ceil(size * max(2.0, 1.25 * short)))
    if len(p.hosts):
        scratch.reserve(p.hosts, cpus=req.cpus, mem_mb=req.mem_mb, disk_mb=req.disk_mb, egress_mbit=req.egress_mbit)
        scratch.reserve_ports(p.hosts, req.host_ports)
    return Choice(p.hosts, p.reasons if len(p.hosts) < req.count else {}, visited=n if hosts is None else len(hosts))


def _dominant(snap: ClusterSnapshot, req: Request) -> tuple[str, float]:
    """The resource the request needs most of, relative to an average host."""
    cpu, mem = req.cpus / snap.mean_cpus, req.mem_mb / snap.mean_mem
    return ("cpus", req.cpus) if cpu >= mem else ("mem", req.mem_mb)


@dataclass
class _Pass:
    hosts: np.ndarray      # host index per placed instance (not reserved yet)
    feasible: int          # hosts that passed every filter
    reasons: dict[str, int]


def _evaluate(scratch: Scratch, req: Request, hosts: np.ndarray | None, rng: np.random.Generator) -> _Pass:
    """The feasibility chain, ranking and fill over ``hosts`` (None: every host, in index order).
    Arrays below are per visited host ("local"); ``at`` maps a local position to its host."""
    snap = scratch.snap
    full = hosts is None
    at = np.arange(len(snap)) if full else hosts

    def take(a: np.ndarray) -> np.ndarray:
        return a if full else a[hosts]

    reasons: Counter[str] = Counter()
    mask = np.ones(len(at), dtype=bool)

    def reject(bad: np.ndarray, why: str) -> None:
        newly = mask & bad
        k = int(newly.sum())
        if k:
            reasons[why] += k
            mask[newly] = False

    reject(take(snap.down), NOT_UP)
    reject(take(snap.draining), DRAINING)
    reject(take(snap.cordoned), CORDONED)

    existing = np.asarray(req.existing, dtype=np.int64)
    cluster_pick: Constraint | None = None
    for c in req.constraints:
        if c.operator in ("LIKE", "UNLIKE"):
            reject(take(snap.rejects(c)), f"{c.attribute} {'not LIKE' if c.operator == 'LIKE' else 'UNLIKE'} {c.value}")
        elif c.operator == "CLUSTER":
            if c.value:
                reject(take(snap.rejects(c)), f"{c.attribute} not {c.value} (CLUSTER)")
            elif len(existing):
                codes, _ = snap.attribute(c.attribute)
                reject(take(codes) != codes[existing[0]], f"{c.attribute} not where the app runs (CLUSTER)")
            else:
                cluster_pick = c

    # Resources: how many instances each host can still take, per resource.
    fit = np.full(len(at), float(req.count))
    for key, cap, need, why in (
            ("cpus", snap.cpus, req.cpus, f"needs {_fmt(req.cpus)} cpus"),
            ("mem", snap.mem, req.mem_mb, f"needs {_fmt(req.mem_mb)} MiB memory"),
            ("disk", snap.disk, req.disk_mb, f"needs {_fmt(req.disk_mb)} MiB disk"),
            ("egress", snap.egress, req.egress_mbit, f"needs {_fmt(req.egress_mbit)} Mbit/s egress"),
            ("addresses", snap.addresses, 1.0, "no free container address")):
        if need <= 0:
            continue
        k = np.floor((take(cap) - take(scratch.used[key])) / need + 1e-9)
        reject(k < 1, why)
        np.minimum(fit, k, out=fit)
    # A host port is a resource of one: one instance per host, and none where it is taken.
    for port in req.host_ports:
        reject(scratch.port_taken(port, at), f"host port {port} in use")
    if req.host_ports:
        np.minimum(fit, 1.0, out=fit)

    # Per-host caps from hostname constraints; per-value caps from the others, over the values
    # the visited hosts have (local codes).
    group_caps: list[tuple[np.ndarray, np.ndarray]] = []  # (local code per host, remaining per code)
    for c in req.constraints:
        if c.operator not in ("UNIQUE", "MAX_PER", "GROUP_BY"):
            continue
        codes, values = snap.attribute(c.attribute)
        if c.attribute == "hostname":
            seen, local = take(codes), np.arange(len(at))  # a value per host
        else:
            seen, local = np.unique(take(codes), return_inverse=True)
        ex = np.sort(codes[existing])
        have = np.searchsorted(ex, seen, side="right") - np.searchsorted(ex, seen, side="left")
        if c.operator == "UNIQUE":
            limit = 1.0
        elif c.operator == "MAX_PER":
            limit = float(c.number)
        else:
            # Spread evenly: no value may get more than its share of the final total.
            nvals = c.number or max(snap.present_values(c.attribute), 1)
            limit = float(math.ceil((len(existing) + req.count) / nvals))
        remaining = limit - have
        if c.attribute != "hostname":
            # A host without the attribute is in no group: it cannot take part in this spread.
            remaining[values[seen] == ""] = 0
        reject(remaining[local] < 1, f"{c.operator} {c.attribute}" + (f" {c.value}" if c.value else "")
               + ": value taken")
        group_caps.append((local, remaining))

    candidates = np.flatnonzero(mask)
    if len(candidates) == 0:
        return _Pass(np.empty(0, dtype=np.int64), 0, dict(reasons))

    # Rank: bin-packing fills the most-used host first (utilization), spread the least-used.
    ix = at[candidates]
    util = (scratch.used["cpus"][ix] / np.maximum(snap.cpus[ix], 1e-9)
            + scratch.used["mem"][ix] / np.maximum(snap.mem[ix], 1e-9))
    # Ties (equal utilization) are broken at random: a nudge far below any real difference.
    key = (-util if req.strategy == "binpack" else util) + rng.random(len(candidates)) * 1e-9
    if not group_caps and cluster_pick is None and req.count < len(candidates):
        # Every candidate takes at least one instance: the best ``count`` are all the fill can use.
        key_top = np.argpartition(key, req.count - 1)[:req.count]
        order = candidates[key_top[np.argsort(key[key_top])]]
    else:
        order = candidates[np.argsort(key)]

    if cluster_pick is not None:
        codes, _ = snap.attribute(cluster_pick.attribute)
        order = order[codes[at[order]] == codes[at[order[0]]]]

    picked = at[np.asarray(_fill(order, fit, group_caps, req.count, spread=req.strategy == "spread"),
                           dtype=np.int64)]
    if len(picked) < req.count and not reasons:
        reasons["every feasible host is full or its group taken"] = len(candidates)
    return _Pass(picked, len(candidates), dict(reasons))


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
