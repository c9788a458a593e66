"""Netlink and raw sockets inside a container's network namespace (the port to the kernel).

A namespace is entered by one dedicated OS thread (setns(2) changes only the calling thread's
namespace), which runs a function there and ends; the event loop's threads never change
namespace.  Sockets opened in that thread stay in that namespace after it ends, which is how the
DHCP client gets its raw socket on the container's eth0.

All link work goes through pyroute2 (real netlink): macvlan creation on the parent NIC, the move
into the container, renaming to eth0, address, default route and the tc egress rule.

A start is on the critical path of every deploy, and on a small host its CPU competes with the
engine's: the macvlan is made inside the container as eth0, up, with a MAC chosen here, in one
request (no temporary name, no move, no rename, no read-back), and links are looked up with one
RTM_GETLINK rather than a dump.
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from services.hostd import linkdump

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetworkError(Exception):
    """A network step failed; the text is shown to users."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _in_netns_blocking(pid: int, fn: Callable[..., T], *args: Any) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError as exc:
            box["e"] = NetworkError(f"the container's network namespace is gone (pid {pid}): {exc.strerror}")
            return
        try:
            _setns(nsfd)  # this thread only; it ends right after, so there is nothing to restore
            box["v"] = fn(*args)
        except BaseException as exc:  # carried to the caller
            box["e"] = exc
        finally:
            os.close(nsfd)

    t = threading.Thread(target=target, name=f"netns-{pid}", daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


async def in_netns(pid: int, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the network namespace of process ``pid``."""
    return await asyncio.to_thread(_in_netns_blocking, pid, fn, *args)


async def in_root(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


# ---------------------------------------------------------------- root namespace


def link_index(ipr: IPRoute, name: str) -> int | None:
    """One RTM_GETLINK by name (``link_lookup`` dumps every link of the namespace)."""
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def ensure_vlan(parent: str, vlan: int) -> str:
    """The 802.1q sub-interface ``<parent>.<vlan>`` (created when missing); its name."""
    name = f"{parent[:15 - len(str(vlan)) - 1]}.{vlan}"
    with IPRoute() as ipr:
        if link_index(ipr, name) is not None:
            return name
        base = link_index(ipr, parent)
        if base is None:
            raise NetworkError(f"parent NIC {parent} does not exist")
        try:
            ipr.link("add", ifname=name, kind="vlan", link=base, vlan_id=vlan)
        except NetlinkError as exc:
            raise NetworkError(f"cannot create VLAN {vlan} on {parent}: {exc.args[-1]}") from None
        ipr.link("set", index=link_index(ipr, name), state="up")
    return name


def random_mac() -> str:
    """A random unicast, locally administered MAC (what the kernel gives a macvlan itself), chosen
    here so the link is made in one request and its MAC needs no read-back."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def create_in_container(parent: str, pid: int, mac: str, ifname: str = "eth0") -> None:
    """A macvlan (bridge mode) on ``parent`` made straight inside ``pid``'s namespace as
    ``ifname``, with ``mac``, up: one netlink request (IFLA_NET_NS_PID; the parent's index is
    resolved in the root namespace, where this runs).  Nothing passes through the root namespace
    under a temporary name, so a crash cannot leave a link there.  An ``ifname`` already in the
    container (a start interrupted before its address) is replaced."""
    with IPRoute() as ipr:
        base = link_index(ipr, parent)
        if base is None:
            raise NetworkError(f"parent NIC {parent} does not exist on this host")
        for attempt in (1, 2):
            try:
                ipr.link("add", ifname=ifname, kind="macvlan", link=base, macvlan_mode="bridge",
                         net_ns_pid=pid, address=mac, state="up")
                return
            except NetlinkError as exc:
                if exc.code == errno.ESRCH:
                    raise NetworkError("the container ended before its interface could be moved in") from None
                if exc.code != errno.EEXIST or attempt == 2:
                    raise NetworkError(f"cannot create a macvlan on {parent}: {exc.args[-1]}") from None
            _in_netns_blocking(pid, delete_link, ifname)


def delete_link(ifname: str) -> None:
    with IPRoute() as ipr:
        idx = link_index(ipr, ifname)
        if idx is not None:
            ipr.link("del", index=idx)


def _strays(ipr: IPRoute, prefix: str, parent: str) -> list[tuple[str, int]]:
    """Macvlans in the root namespace named ``prefix…`` on ``parent``: (name, index).  A link
    moved into a container is no longer listed here; one that stays was never moved (a crash
    or a failure between creation and the move)."""
    base = link_index(ipr, parent)
    if base is None:  # not ours to judge: other hostds' links hang off other parents
        return []
    # The macvlans only, filtered by the kernel (linkdump.py): not a decoded dump of every link.
    return [(link.name, link.index) for link in linkdump.links_of_kind("macvlan")
            if link.name.startswith(prefix) and link.parent == base]


def list_strays(prefix: str, parent: str) -> list[str]:
    with IPRoute() as ipr:
        return sorted(name for name, _ in _strays(ipr, prefix, parent))


def remove_strays(prefix: str, parent: str) -> list[str]:
    """Delete macvlans left in the root namespace by a crash (named ``prefix…`` on ``parent``)."""
    gone = []
    with IPRoute() as ipr:
        for name, idx in _strays(ipr, prefix, parent):
            ipr.link("del", index=idx)
            gone.append(name)
    return gone


def remove_stray(name: str, prefix: str, parent: str) -> str:
    """Delete the root-namespace macvlan ``name`` if it still is one of ours (named ``prefix…``
    on ``parent``).  Returns "" when deleted, "absent" when no link of that name is in the root
    namespace (gone, or moved into its container), else why it is not ours to delete."""
    with IPRoute() as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            return "absent"
        if not any(i == idx for _, i in _strays(ipr, prefix, parent)):
            return f"{name} is not a noops macvlan on {parent}"
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:  # gone meanwhile
                return "absent"
            raise NetworkError(f"cannot delete {name}: {exc.args[-1]}") from None
    return ""


def count_links(prefix: str) -> int:
    with IPRoute() as ipr:
        return sum(1 for link in ipr.get_links() if (link.get_attr("IFLA_IFNAME") or "").startswith(prefix))


# ---------------------------------------------------------------- inside the container (call via in_netns)

@dataclass(frozen=True)
class Iface:
    mac: str
    cidr: str  # "" when no IPv4 address yet


def configure(cidr: str, router: str, egress_mbit: int, mac: str, announced: bool = True,
              ifname: str = "eth0") -> None:
    """Address the fresh ``ifname`` (made by ``create_in_container``: up, no address, no qdisc),
    default route, egress rule, announcement (``announced``: False when the caller sends it on
    a packet socket it has open anyway).  Runs inside the container."""
    ip, _, prefix = cidr.partition("/")
    with IPRoute() as ipr:
        idx = link_index(ipr, ifname)
        if idx is None:
            raise NetworkError("the container's interface disappeared")
        ipr.addr("add", index=idx, address=ip, prefixlen=int(prefix))
        if router:
            ipr.route("replace", dst="0.0.0.0/0", gateway=router, oif=idx)
        if egress_mbit > 0:
            ipr.tc("add", "tbf", index=idx, handle="1:", **tbf_params(egress_mbit))
    if announced:
        announce(ifname, mac, ip)


ETH_P_ARP = 0x0806


def garp_frame(mac: str, ip: str) -> bytes:
    """A gratuitous ARP request (RFC 5227 announcement): "ip is at mac", to everyone."""
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = socket.inet_aton(ip)
    return (b"\xff" * 6 + hw + ETH_P_ARP.to_bytes(2, "big")
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr + b"\0" * 6 + addr)


def announce(ifname: str, mac: str, ip: str) -> None:
    """Tell the segment that ``ip`` now lives at ``mac``.  Addresses come back to new containers
    (DHCP, the pool) while the switch's neighbours still map them to the previous container's MAC:
    their unicast replies -- a DHCP server's ACK to a renewal, a gateway's traffic -- went to the
    old MAC until the stale entry was probed out (seen: a renewal timing out 5 s after reuse).
    Best effort: a lost announcement leaves only that delay."""
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((ifname, 0))
            s.send(garp_frame(mac, ip))
    except OSError:
        pass


def announce_on(sock: socket.socket, mac: str, ip: str, ifname: str = "eth0") -> None:
    """``announce`` on an open packet socket of the interface (non-blocking; best effort too).
    Sent as ARP (the socket may be bound to another protocol: the address sets the frame's)."""
    try:
        sock.sendto(garp_frame(mac, ip), (ifname, ETH_P_ARP))
    except OSError:
        pass


def tbf_params(mbit: int) -> dict[str, Any]:
    """Token bucket for ``mbit``: a burst of 10 ms of traffic (at least 32 KiB, so a 250 Hz
    kernel still reaches the rate), 50 ms queue."""
    rate_bytes = mbit * 1_000_000 // 8
    return {"rate": f"{mbit}mbit", "burst": max(rate_bytes // 100, 32 * 1024), "latency": "50ms"}


def read_iface(ifname: str = "eth0") -> Iface | None:
    with IPRoute() as ipr:
        idx = link_index(ipr, ifname)
        if idx is None:
            return None
        mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
        addrs = ipr.get_addr(index=idx, family=2)
        cidr = ""
        if addrs:
            cidr = f"{addrs[0].get_attr('IFA_ADDRESS')}/{addrs[0]['prefixlen']}"
        return Iface(mac=str(mac), cidr=cidr)


def egress_qdisc(ifname: str = "eth0") -> str:
    """The kind of the root qdisc on ``ifname`` ('' when none): for tests and inventory."""
    with IPRoute() as ipr:
        idx = link_index(ipr, ifname)
        if idx is None:
            return ""
        for q in ipr.get_qdiscs(index=idx):
            if q["parent"] == 0xFFFFFFFF:
                return str(q.get_attr("TCA_KIND"))
    return ""


def open_raw(ifname: str = "eth0") -> Any:
    from services.hostd.dhcp import raw_socket
    return raw_socket(ifname)
