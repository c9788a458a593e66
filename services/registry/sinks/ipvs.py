"""IPVS sink (the talk's LVS): one virtual service per app and port name on ``vip:<lb port>``,
one real server per in-service instance, through pyroute2's generic-netlink IPVS socket.

Only for kernels with IPVS (``/proc/net/ip_vs`` exists, module ``ip_vs`` loaded): ``available()``
says so and the registry leaves the sink out otherwise, with a log line.  The decision is pure
(``plan``: observed table + desired table -> operations) and unit-tested; the kernel part runs
only where IPVS exists.  The virtual service port is the same ``lb_ports`` assignment HAProxy
uses, on the address ``vip``.

Forwarding is masquerading (NAT) by default: it works whatever the containers' network; direct
routing (``fwd="dr"``) needs the VIP on every container's loopback and the same L2.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from libs import messages
from services.registry.sinks.model import Desired

FWD = {"masq": 0, "tunnel": 2, "dr": 3}


@dataclass(frozen=True, order=True)
class VService:
    addr: str
    port: int
    protocol: int = socket.IPPROTO_TCP


@dataclass(frozen=True, order=True)
class Real:
    addr: str
    port: int


Table = Mapping[VService, frozenset[Real]]


@dataclass(frozen=True, order=True)
class Op:
    # Order of kinds below is the order they are applied: services exist before their dests,
    # dests leave before their service.
    rank: int
    kind: str          # "add_service" | "add_dest" | "del_dest" | "del_service"
    service: VService
    real: Real | None = None


_RANK = {"add_service": 0, "add_dest": 1, "del_dest": 2, "del_service": 3}


def _op(kind: str, svc: VService, real: Real | None = None) -> Op:
    return Op(_RANK[kind], kind, svc, real)


def desired_table(desired: Desired, vip: str) -> dict[VService, frozenset[Real]]:
    """Sink input -> the IPVS table noops wants (pure)."""
    out: dict[VService, frozenset[Real]] = {}
    for state in desired.values():
        for pname, lb in state.lb.items():
            out[VService(vip, lb.port)] = frozenset(Real(ip, p) for ip, p in state.targets(pname).values())
    return out


def plan(observed: Table, desired: Table, *, scope: set[VService] | None = None) -> list[Op]:
    """Operations taking the kernel table from ``observed`` to ``desired`` (pure).  ``scope``: the
    services this call may touch (incremental updates); None = all, and services not desired are
    deleted (only services on noops' VIP are ever passed in ``observed``)."""
    ops: list[Op] = []
    services = set(desired) | (set(observed) if scope is None else set())
    if scope is not None:
        services &= scope
    for svc in services:
        want, have = desired.get(svc), observed.get(svc)
        if want is None:
            if have is not None:
                ops.append(_op("del_service", svc))
            continue
        if have is None:
            ops.append(_op("add_service", svc))
            have = frozenset()
        ops += [_op("add_dest", svc, r) for r in want - have]
        ops += [_op("del_dest", svc, r) for r in have - want]
    return sorted(ops)


def view_groups(observed: Table) -> dict[str, list[str]]:
    """Kernel table -> ``"<vip>:<port>"`` -> sorted ``"<ip>:<port>"`` (pure)."""
    return {f"{svc.addr}:{svc.port}": sorted(f"{r.addr}:{r.port}" for r in reals)
            for svc, reals in sorted(observed.items())}


def available() -> bool:
    return Path("/proc/net/ip_vs").exists()


class IpvsSink:
    name = "ipvs"

    def __init__(self, vip: str, *, scheduler: str = "wlc", fwd: str = "masq") -> None:
        self.vip, self.scheduler, self.fwd = vip, scheduler, FWD[fwd]
        self._ipvs = None
        # One netlink socket, used from worker threads by the runner's syncs and by ``observe``.
        self._lock = threading.Lock()

    def _sock(self):  # pragma: no cover - needs a kernel with IPVS
        if self._ipvs is None:
            from pyroute2 import IPVS
            self._ipvs = IPVS()
        return self._ipvs

    def _observed(self) -> dict[VService, frozenset[Real]]:  # pragma: no cover - kernel
        from pyroute2 import IPVSDest, IPVSService
        ipvs, out = self._sock(), {}
        for msg in ipvs.service("dump"):
            s = IPVSService.from_message(msg)
            if s.get("addr") != self.vip:
                continue
            svc = VService(s["addr"], int(s["port"]), int(s["protocol"]))
            out[svc] = frozenset(Real(d["addr"], int(d["port"]))
                                 for d in map(IPVSDest.from_message, ipvs.dest("dump", service=IPVSService(
                                     addr=svc.addr, port=svc.port, protocol=svc.protocol))))
        return out

    def _execute(self, ops: list[Op]) -> None:  # pragma: no cover - kernel
        from pyroute2 import IPVSDest, IPVSService
        ipvs = self._sock()
        for op in ops:
            svc = IPVSService(addr=op.service.addr, port=op.service.port, protocol=op.service.protocol,
                              sched_name=self.scheduler)
            if op.kind == "add_service":
                ipvs.service("add", service=svc)
            elif op.kind == "del_service":
                ipvs.service("del", service=svc)
            else:
                assert op.real is not None
                dest = IPVSDest(addr=op.real.addr, port=op.real.port, fwd_method=self.fwd)
                ipvs.dest("add" if op.kind == "add_dest" else "del", service=svc, dest=dest)

    def _sync(self, desired: Desired, full: bool) -> None:  # pragma: no cover - kernel
        want = desired_table(desired, self.vip)
        scope = None if full else set(want)
        with self._lock:
            self._execute(plan(self._observed(), want, scope=scope))

    def _view(self) -> dict[str, list[str]]:  # pragma: no cover - kernel
        with self._lock:
            return view_groups(self._observed())

    async def apply_full(self, desired: Desired) -> None:  # pragma: no cover - kernel
        await asyncio.to_thread(self._sync, desired, True)

    async def update(self, changes: Desired) -> None:  # pragma: no cover - kernel
        await asyncio.to_thread(self._sync, changes, False)

    async def observe(self) -> messages.SinkView:  # pragma: no cover - kernel
        return messages.SinkView(sink=self.name, ok=True,
                                 groups=await asyncio.to_thread(self._view))

    def forget(self, apps: Iterable[str]) -> None:
        """Nothing to drop: every sync already reads the kernel's table first (``_observed``)."""

    async def close(self) -> None:  # pragma: no cover - kernel
        if self._ipvs is not None:
            self._ipvs.close()
            self._ipvs = None
