"""The cluster as the placer sees it: one numpy array per host resource, so feasibility and
scoring over 10,000 hosts are a handful of vector operations.

A ``ClusterSnapshot`` is immutable; placing against it goes through a ``Scratch`` (a private
copy of the usage arrays) so a batch of plans reserves as it goes without touching the snapshot.
What depends on the snapshot alone (attribute codes, constraint masks, the shuffled visiting order)
is computed once per snapshot, on first use, so a decision touches only the hosts it samples.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import re

import numpy as np

from libs.constraints import Constraint
from services.placer.freeindex import FreeIndex
from services.placer.sampling import Sampling

UNLIMITED = np.inf


@dataclass(frozen=True)
class HostRow:
    """One host as read from the task log (capacity from its heartbeat, usage from reservations)."""
    id: str
    cpus: float
    mem_mb: float
    labels: Mapping[str, str] = field(default_factory=dict)
    disk_mb: float = UNLIMITED       # free volume capacity (best driver); inf when not reported
    egress_mbit: float = UNLIMITED
    addresses: float = UNLIMITED     # free container addresses
    up: bool = True
    draining: bool = False
    cordoned: bool = False
    used_cpus: float = 0.0
    used_mem_mb: float = 0.0
    used_disk_mb: float = 0.0
    used_egress_mbit: float = 0.0
    used_addresses: float = 0.0
    ports_taken: frozenset[int] = frozenset()  # host ports in use: listening there, or held by an instance


class ClusterSnapshot:
    def __init__(self, hosts: Sequence[HostRow]) -> None:
        self.ids: tuple[str, ...] = tuple(h.id for h in hosts)
        self.index: dict[str, int] = {h: i for i, h in enumerate(self.ids)}
        f = np.float64
        self.cpus = np.array([h.cpus for h in hosts], dtype=f)
        self.mem = np.array([h.mem_mb for h in hosts], dtype=f)
        self.disk = np.array([h.disk_mb for h in hosts], dtype=f)
        self.egress = np.array([h.egress_mbit for h in hosts], dtype=f)
        self.addresses = np.array([h.addresses for h in hosts], dtype=f)
        self.down = np.array([not h.up for h in hosts], dtype=bool)
        self.draining = np.array([h.draining for h in hosts], dtype=bool)
        self.cordoned = np.array([h.cordoned for h in hosts], dtype=bool)
        self.used = {
            "cpus": np.array([h.used_cpus for h in hosts], dtype=f),
            "mem": np.array([h.used_mem_mb for h in hosts], dtype=f),
            "disk": np.array([h.used_disk_mb for h in hosts], dtype=f),
            "egress": np.array([h.used_egress_mbit for h in hosts], dtype=f),
            "addresses": np.array([h.used_addresses for h in hosts], dtype=f),
        }
        # Sparse: host port -> indexes of the hosts where it is taken (few apps use host ports).
        by_port: dict[int, list[int]] = {}
        for i, h in enumerate(hosts):
            for port in h.ports_taken:
                by_port.setdefault(port, []).append(i)
        self.ports_taken: Mapping[int, tuple[int, ...]] = {p: tuple(ix) for p, ix in by_port.items()}
        self._labels = [h.labels for h in hosts]
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._masks: dict[Constraint, np.ndarray] = {}
        self._present: dict[str, int] = {}
        self._order: np.ndarray | None = None
        self.mean_cpus = float(self.cpus.mean()) if len(hosts) else 1.0
        self.mean_mem = float(self.mem.mean()) if len(hosts) else 1.0
        for a in (self.cpus, self.mem, self.disk, self.egress, self.addresses, self.down, self.draining,
                  self.cordoned, *self.used.values()):
            a.flags.writeable = False

    def __len__(self) -> int:
        return len(self.ids)

    def attribute(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes per host, distinct values) for a host attribute; "" where a host lacks it.
        ``hostname`` is the host id.  Computed once per attribute and snapshot."""
        if name not in self._codes:
            if name == "hostname":
                values = np.array(self.ids, dtype=object)
            else:
                values = np.array([lb.get(name, "") for lb in self._labels], dtype=object)
            uniques, codes = np.unique(values.astype(str), return_inverse=True) if len(values) else \
                (np.array([], dtype=str), np.array([], dtype=np.int64))
            self._codes[name] = (codes.astype(np.int64), uniques)
        return self._codes[name]

    def present_values(self, name: str) -> int:
        """Distinct values of an attribute among the hosts that are up (GROUP_BY's default)."""
        if name not in self._present:
            codes, _ = self.attribute(name)
            self._present[name] = len(np.unique(codes[~self.down]))
        return self._present[name]

    def rejects(self, c: Constraint) -> np.ndarray:
        """Hosts a LIKE, UNLIKE or CLUSTER-with-a-value constraint rules out: they depend only on
        what the hosts are."""
        if c not in self._masks:
            codes, values = self.attribute(c.attribute)
            if c.operator == "CLUSTER":
                bad = (values != c.value)[codes]
            else:
                rx = re.compile(c.value)
                hit = np.array([rx.fullmatch(v) is not None for v in values], dtype=bool)
                # A host without the attribute cannot match, so UNLIKE admits it (Marathon's rule).
                bad = ~hit[codes] if c.operator == "LIKE" else (hit & (values != ""))[codes]
            bad.flags.writeable = False
            self._masks[c] = bad
        return self._masks[c]

    @property
    def order(self) -> np.ndarray:
        """Every host index once, shuffled (fixed per snapshot): the order decisions visit hosts
        in, each from its own seeded start, so a sample is spread over racks and zones."""
        if self._order is None:
            self._order = np.random.default_rng(len(self)).permutation(len(self))
            self._order.flags.writeable = False
        return self._order

    def scratch(self, sampling: Sampling = Sampling()) -> Scratch:
        return Scratch(self, sampling)


class Scratch:
    """Mutable usage on top of a snapshot: what the plans made so far have reserved."""

    def __init__(self, snap: ClusterSnapshot, sampling: Sampling = Sampling()) -> None:
        self.snap, self.sampling = snap, sampling
        self._indexes: dict[str, FreeIndex] = {}  # built on first use, then kept up to date by reserve()
        self.used = {k: v.copy() for k, v in snap.used.items()}
        self.ports_taken: dict[int, list[int]] = {}  # taken by this scratch's plans, on top of the snapshot's

    def port_taken(self, port: int, hosts: np.ndarray) -> np.ndarray:
        """For each of ``hosts``: is ``port`` taken there?"""
        taken = [*self.snap.ports_taken.get(port, ()), *self.ports_taken.get(port, ())]
        return np.isin(hosts, taken) if taken else np.zeros(len(hosts), dtype=bool)

    def reserve_ports(self, hosts: np.ndarray, ports: Sequence[int]) -> None:
        for port in ports:
            self.ports_taken.setdefault(port, []).extend(hosts.tolist())

    def free_index(self, key: str) -> FreeIndex:
        """The schedulable hosts by free ``cpus`` or ``mem``."""
        if key not in self._indexes:
            s = self.snap
            self._indexes[key] = FreeIndex(self._capacity(key) - self.used[key], ~(s.down | s.draining | s.cordoned),
                                           s.order)
        return self._indexes[key]

    def _capacity(self, key: str) -> np.ndarray:
        return self.snap.cpus if key == "cpus" else self.snap.mem

    def reserve(self, hosts: np.ndarray, *, cpus: float, mem_mb: float, disk_mb: float, egress_mbit: float) -> None:
        touched, times = np.unique(hosts, return_counts=True)
        for key, amount in (("cpus", cpus), ("mem", mem_mb), ("disk", disk_mb), ("egress", egress_mbit),
                            ("addresses", 1.0)):
            if amount:
                self.used[key][touched] += amount * times
        if self._indexes:
            for key, index in self._indexes.items():
                index.update(touched.tolist(), (self._capacity(key)[touched] - self.used[key][touched]).tolist())
