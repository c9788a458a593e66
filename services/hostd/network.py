"""How an instance gets its address: a macvlan on the host's NIC, addressed by DHCP or the pool.

Containers are created with Docker networking off (``NetworkMode: none``).  Once the container
runs, ``attach`` gives it a host-like interface:

    parent NIC (or <parent>.<vlan>) ── macvlan, bridge mode, made inside the container's
        namespace (found by its pid) as eth0, up, with a MAC chosen by hostd
        → address: DHCP from the macvlan's own MAC (mode "dhcp") or the placer's pool address
        → default route via the router, tbf egress rule when egress_mbit > 0

Leases are hostd's own state (``self.attached``): renewed at T1 by ``renew_loop``, re-read
from the container and re-requested at adoption (``adopt``), released on stop or death
(``detach``: a RELEASE frame sent from the container's MAC through the parent NIC, which works
even when the container's namespace is already gone).  The interface and its tc rule vanish
with the namespace, so detaching removes no link.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from services.hostd import dhcp, netns
from services.hostd.dhcp import DhcpError, Lease
from services.hostd.leases import LeaseJournal
from services.hostd.netns import NetworkError

log = logging.getLogger("noops.hostd.network")

NETWORK_MODE = "none"
LINK_PREFIX = "nm"


def host_config() -> dict[str, Any]:
    """The HostConfig keys for a new container: no Docker networking at all."""
    return {"NetworkMode": NETWORK_MODE}


def ip_of(network_settings: Any) -> str:
    """Docker knows no address for a ``none`` container; hostd's attachment has it."""
    return ""


def temp_link_name(instance: str) -> str:
    """The root-namespace name hostd gave a macvlan before moving it (hostds before the
    one-request attach did): ``nm…`` links on our parent are still found and removed as strays."""
    return LINK_PREFIX + hashlib.sha256(instance.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Attachment:
    """What an instance's eth0 is: the IpReport's ip/mac/parent/lease_expires come from here."""
    instance: str
    pid: int
    ip: str
    prefix: int
    mac: str
    parent: str
    lease: Lease | None = None   # DHCP mode only

    @property
    def lease_expires(self) -> float:
        return self.lease.expires if self.lease else 0.0


def failure(exc: BaseException, host: str) -> str:
    if isinstance(exc, DhcpError):
        return f"no address from DHCP on host {host}: {exc}"
    return f"network setup failed on host {host}: {exc}"


class Network:
    def __init__(self, *, host: str, parent: str, vlan: int = 0, mode: str = "dhcp", pool_gateway: str = "",
                 dhcp_timeout_s: float = 5.0, clock: Callable[[], float] = time.time,
                 journal: LeaseJournal | None = None) -> None:
        self.host = host
        self.base_parent = parent
        self.vlan = vlan
        self.mode = mode
        self.pool_gateway = pool_gateway
        self.dhcp_timeout_s = dhcp_timeout_s
        self.clock = clock
        self.attached: dict[str, Attachment] = {}
        self.journal = journal if journal is not None else LeaseJournal()
        # Called after each renewal (the agent reports the new expiry to the task log).
        self.on_renewed: Callable[[Attachment], Awaitable[None]] | None = None

    async def parent(self) -> str:
        """The macvlan parent: the NIC itself, or its 802.1q sub-interface when a VLAN is set."""
        if self.vlan:
            return await netns.in_root(netns.ensure_vlan, self.base_parent, self.vlan)
        return self.base_parent

    async def check(self) -> str:
        """'' when the parent NIC exists, else why not (hostd keeps serving; starts fail with it)."""
        try:
            await self.parent()
        except NetworkError as exc:
            return str(exc)
        found = await netns.in_root(_exists, self.base_parent)
        return "" if found else f"parent NIC {self.base_parent} does not exist on host {self.host}"

    async def cleanup_strays(self) -> list[str]:
        parent = await self.parent()
        gone = await netns.in_root(netns.remove_strays, LINK_PREFIX, parent)
        if gone:
            log.info("removed half-made interfaces", extra={"links": gone})
        return gone

    async def strays(self) -> list[str]:
        """Our macvlans still in the root namespace (never moved into a container)."""
        return await netns.in_root(netns.list_strays, LINK_PREFIX, await self.parent())

    async def remove_stray(self, name: str) -> str:
        """Delete one of them after checking again; see ``netns.remove_stray`` for the answer."""
        return await netns.in_root(netns.remove_stray, name, LINK_PREFIX, await self.parent())

    def leased(self) -> list[str]:
        """Instances holding a DHCP lease: journaled, or in memory (no state directory)."""
        held = {i for i, att in self.attached.items() if att.lease is not None}
        return sorted(held.union(self.journal.instances()))

    # ------------------------------------------------------------ attach / adopt / detach

    async def attach(self, instance: str, pid: int, *, address: str = "", egress_mbit: int = 0) -> Attachment:
        """Give the running container ``pid`` its eth0 and address.  Raises NetworkError/DhcpError."""
        parent = await self.parent()
        mac = netns.random_mac()
        await netns.in_root(netns.create_in_container, parent, pid, mac)
        if self.mode == "pool":
            if not address:
                raise NetworkError("no address was reserved for the instance (IPAM mode pool)")
            cidr, router, lease = address, self.pool_gateway, None
            await netns.in_netns(pid, netns.configure, cidr, router, egress_mbit, mac)
        else:
            async def lease_and_configure(sock: socket.socket) -> Lease:
                got = await dhcp.acquire(sock, mac, timeout_s=self.dhcp_timeout_s, clock=self.clock)
                try:
                    await netns.in_netns(pid, netns.configure, got.cidr, got.router, egress_mbit, mac, False)
                except BaseException:
                    await self._send_release(got, parent)
                    raise
                # The announcement goes out on the DHCP socket: a packet socket of its own would
                # cost another close (see _close_raw) on the way to RUNNING.
                netns.announce_on(sock, mac, got.ip)
                return got
            lease = await self._dhcp(pid, lease_and_configure)
            cidr = lease.cidr
        ip, _, prefix = cidr.partition("/")
        att = Attachment(instance=instance, pid=pid, ip=ip, prefix=int(prefix), mac=mac, parent=parent, lease=lease)
        self._keep(att)
        return att

    def _keep(self, att: Attachment) -> None:
        self.attached[att.instance] = att
        if att.lease is not None:
            self.journal.record(att.instance, att.lease, att.parent)

    async def adopt(self, instance: str, pid: int) -> Attachment | None:
        """Take over a running container's eth0 after a restart: read it, re-request its lease.
        None when it has no addressed eth0 (a half-made start): the caller attaches afresh."""
        iface = await netns.in_netns(pid, netns.read_iface, "eth0")
        if iface is None or not iface.cidr:
            return None
        parent = await self.parent()
        ip, _, prefix = iface.cidr.partition("/")
        lease = None
        if self.mode == "dhcp":
            try:
                lease = await self._dhcp(pid, lambda s: dhcp.reboot(s, iface.mac, ip, timeout_s=self.dhcp_timeout_s,
                                                                    clock=self.clock))
            except DhcpError as exc:
                log.warning("could not re-request an adopted lease; will retry at renewal",
                            extra={"instance": instance, "ip": ip, "error": str(exc)})
        att = Attachment(instance=instance, pid=pid, ip=ip, prefix=int(prefix), mac=iface.mac, parent=parent,
                         lease=lease)
        self._keep(att)
        return att

    async def detach(self, instance: str) -> None:
        """Forget the instance's interface and send its DHCP RELEASE (the link dies with the netns).
        A lease only the journal knows (its container died while hostd was down) is released too."""
        att = self.attached.pop(instance, None)
        held = (att.lease, att.parent) if att is not None and att.lease is not None else self.journal.get(instance)
        if held is not None:
            await self._send_release(*held)
        self.journal.forget(instance)

    async def release_orphans(self, keep: set[str]) -> list[str]:
        """At start: release the journal's leases of instances with no running container here."""
        gone = [i for i in self.journal.instances() if i not in keep and i not in self.attached]
        for instance in gone:
            await self.detach(instance)
        if gone:
            log.info("released leases of containers that ended while hostd was away", extra={"instances": gone})
        return gone

    async def _send_release(self, lease: Lease, parent: str) -> None:
        try:
            await netns.in_root(_send_frame, parent, dhcp.release_frame(lease, xid=dhcp.new_xid()))
        except OSError as exc:  # the server lets the lease expire instead
            log.warning("DHCP release not sent", extra={"ip": lease.ip, "error": str(exc)})

    async def _dhcp(self, pid: int, exchange: Callable[[socket.socket], Any]) -> Lease:
        sock = await netns.in_netns(pid, netns.open_raw, "eth0")
        try:
            return await exchange(sock)
        finally:
            await _close_raw(sock)

    # ------------------------------------------------------------ renewal

    async def renew_due(self) -> int:
        """Renew every lease past its T1; returns how many were renewed."""
        now = self.clock()
        done = 0
        for inst, att in list(self.attached.items()):
            if att.lease is None or att.lease.renew_at > now:
                continue
            lease = att.lease
            try:
                new = await self._dhcp(att.pid, lambda s, lease=lease: dhcp.renew(  # type: ignore[misc]
                    s, lease, timeout_s=self.dhcp_timeout_s, clock=self.clock))
            except (DhcpError, NetworkError, OSError) as exc:
                # Try again in a while; past expiry the server may give the address away.
                retry = replace(lease, t1_s=lease.t1_s + max(1, (lease.lease_s - lease.t1_s) // 4))
                if self.attached.get(inst) is att:
                    self.attached[inst] = replace(att, lease=retry)
                log.warning("lease renewal failed", extra={"instance": inst, "ip": att.ip, "error": str(exc)})
                continue
            if self.attached.get(inst) is not att:
                # Stopped while the renewal was on the wire: its RELEASE may have reached the server
                # before this REQUEST did, so the server holds the lease again.  Give it back.
                now_att = self.attached.get(inst)
                if now_att is None or now_att.mac != att.mac:
                    await self._send_release(new, att.parent)
                continue
            renewed = replace(att, lease=new)
            self._keep(renewed)
            done += 1
            log.info("lease renewed", extra={"instance": inst, "ip": att.ip, "expires": new.expires})
            if self.on_renewed is not None:
                try:
                    await self.on_renewed(renewed)
                except Exception as exc:  # the next renewal reports again
                    log.warning("renewed lease not reported", extra={"instance": inst,
                                                                      "error": str(exc) or type(exc).__name__})
        return done

    async def renew_loop(self, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.renew_due()
            except Exception as exc:  # never let renewal die; the next round tries again
                log.warning("renewal round failed", extra={"error": str(exc) or type(exc).__name__})
            await asyncio.sleep(interval_s)


def _exists(name: str) -> bool:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


async def _close_raw(sock: socket.socket) -> None:
    """Close a packet socket off the event loop: the kernel waits out an RCU grace period in every
    packet socket's close (synchronize_net in packet_release), 16 ms here, which stalled every
    other instance's start and stop on this host when it ran on the loop.  No reader or writer
    of the loop's is left on it: the exchange's awaits have finished."""
    fd = sock.detach()
    await asyncio.to_thread(os.close, fd)


def _send_frame(ifname: str, data: bytes) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        s.send(data)
    finally:
        s.close()
