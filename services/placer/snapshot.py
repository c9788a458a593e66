"""The cluster as the placer sees it: one numpy array per host resource, so feasibility and
scoring over 10,000 hosts are a handful of vector operations.

A ``ClusterSnapshot`` is immutable; placing against it goes through a ``Scratch`` (a private
copy of the usage arrays) so a batch of plans reserves as it goes without touching the snapshot.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

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

    def scratch(self) -> Scratch:
        return Scratch(self)


class Scratch:
    """Mutable usage on top of a snapshot: what the plans made so far have reserved."""

    def __init__(self, snap: ClusterSnapshot) -> None:
        self.snap = snap
        self.used = {k: v.copy() for k, v in snap.used.items()}
        self.ports_taken: dict[int, list[int]] = {}  # taken by this scratch's plans, on top of the snapshot's

    def port_taken(self, port: int) -> np.ndarray:
        """Boolean mask of the hosts where ``port`` is taken."""
        taken = np.zeros(len(self.snap), dtype=bool)
        taken[list(self.snap.ports_taken.get(port, ()))] = True
        taken[self.ports_taken.get(port, [])] = True
        return taken

    def reserve_ports(self, hosts: np.ndarray, ports: Sequence[int]) -> None:
        for port in ports:
            self.ports_taken.setdefault(port, []).extend(hosts.tolist())

    def reserve(self, hosts: np.ndarray, *, cpus: float, mem_mb: float, disk_mb: float, egress_mbit: float) -> None:
        for key, amount in (("cpus", cpus), ("mem", mem_mb), ("disk", disk_mb), ("egress", egress_mbit),
                            ("addresses", 1.0)):
            if amount:
                np.add.at(self.used[key], hosts, amount)
