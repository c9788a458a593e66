"""The heartbeat: 'this host is alive and offers this much', on core NATS every interval.

Lossy by design: the next one follows.  A host whose Docker engine does not answer skips its
heartbeats, so the placer stops offering it placements until the engine is back.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from pyroute2 import DiagSocket
from pyroute2.netlink.exceptions import NetlinkError

from libs import messages, subjects
from libs.settings import HostdSettings, parse_labels
from services.hostd import metrics
from services.hostd.runtime import ContainerRuntime, RuntimeRefused, RuntimeUnavailable

log = logging.getLogger("noops.hostd.heartbeat")


def mem_total_mb(meminfo: str) -> int:
    """MemTotal from the text of /proc/meminfo, in MiB (0 when absent)."""
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "MemTotal":
            fields = rest.split()
            unit = fields[1].lower() if len(fields) > 1 else "kb"
            factor = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "b": 1}.get(unit, 1024)
            return int(fields[0]) * factor // (1024 * 1024)
    return 0


def host_labels(labels_text: str, host_id: str) -> dict[str, str]:
    """Configured labels plus ``hostname`` (which the UNIQUE hostname constraint uses)."""
    return {**parse_labels(labels_text), "hostname": host_id}


@dataclass(frozen=True)
class Offer:
    """What this host offers to instances, fixed at start."""
    cpus: float
    mem_mb: int
    labels: dict[str, str]


def offer(settings: HostdSettings, *, cpu_count: int | None, meminfo: str) -> Offer:
    """Settings win; 0 means the whole machine."""
    return Offer(cpus=settings.cpus or float(cpu_count or 1),
                 mem_mb=settings.mem_mb or mem_total_mb(meminfo),
                 labels=host_labels(settings.labels, settings.host_id))


def machine_offer(settings: HostdSettings) -> Offer:
    try:
        with open("/proc/meminfo") as f:
            meminfo = f.read()
    except OSError:
        meminfo = ""
    return offer(settings, cpu_count=os.cpu_count(), meminfo=meminfo)


_TCP_LISTEN = "0A"


def listening_ports(*tables: str) -> list[int]:
    """TCP ports in LISTEN state, from /proc/net/tcp and /proc/net/tcp6 texts (any local address:
    a port bound on loopback only is still not offered to an instance)."""
    ports: set[int] = set()
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def read_listening_ports() -> list[int]:
    """This namespace's TCP ports in LISTEN state.  Asked of the kernel by sock_diag with a state
    filter, which walks only the listening sockets: reading /proc/net/tcp walks the whole socket
    hash table, 17 ms a call here even with 130 sockets (a fifth of hostd's CPU during a stop,
    one heartbeat a second).  /proc is the fallback where sock_diag is missing."""
    try:
        return _diag_listening_ports()
    except (OSError, NetlinkError):
        return _proc_listening_ports()


_TCP_LISTEN_STATE = 10   # TCP_LISTEN in the kernel's tcp_states.h


def _diag_listening_ports() -> list[int]:
    ports: set[int] = set()
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ds.get_sock_stats(family=family, states=1 << _TCP_LISTEN_STATE):
                ports.add(int(msg["idiag_sport"]))
    return sorted(ports)


def _proc_listening_ports() -> list[int]:
    texts = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                texts.append(f.read())
        except OSError:
            continue
    return listening_ports(*texts)


async def heartbeat_loop(nc: NATS, runtime: ContainerRuntime, *, host: str, owner: dict[str, str],
                         offer: Offer, interval_s: float, clock: Callable[[], float],
                         capacity: Callable[[int], Awaitable[tuple[dict[str, int], int]]] | None = None,
                         ipam: str = "dhcp") -> None:
    """``capacity(instances)`` → (free volume MiB per driver, free addresses or -1)."""
    subject = subjects.heartbeat(host)
    healthy = True
    while True:
        try:
            count = len(await runtime.list(owner))
            metrics.CONTAINERS.set(count)
            disk, addresses = await capacity(count) if capacity is not None else ({}, -1)
            beat = messages.Heartbeat(host=host, cpus=offer.cpus, mem_mb=offer.mem_mb, labels=offer.labels,
                                      instances=count, load1=os.getloadavg()[0], at=clock(),
                                      disk_free_mb=disk, addresses_free=addresses, ipam=ipam,
                                      ports_listening=await asyncio.to_thread(read_listening_ports))
            await nc.publish(subject, messages.encode(beat))
            if not healthy:
                log.info("heartbeats resumed")
            healthy = True
        except (RuntimeUnavailable, RuntimeRefused) as exc:
            if healthy:  # one line per outage, not one per interval
                log.warning("docker does not answer; heartbeats paused", extra={"error": str(exc)})
            healthy = False
        except Exception as exc:  # NATS trouble: the client reconnects by itself
            log.warning("heartbeat not sent", extra={"error": str(exc) or type(exc).__name__})
        await asyncio.sleep(interval_s)
