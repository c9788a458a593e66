"""A small DHCPv4 client run by hostd on behalf of a container, as the CNI dhcp plugin does.

Why not pyroute2.dhcp: its client (0.9) owns an interface of the *calling process's* namespace
and runs its own state machine with hooks; hostd must speak for many interfaces, each inside a
different container's namespace, and keep the lease as its own state (reported, re-read after a
restart).  So the wire format and the four exchanges hostd needs are here, on raw AF_PACKET
sockets that the caller opens in the right namespace (netns.py):

- ``acquire``: DISCOVER → OFFER → REQUEST → ACK, from the interface's own MAC
- ``reboot``: INIT-REBOOT REQUEST for an address the interface already holds (adoption)
- ``renew``: unicast REQUEST at T1 with ciaddr set
- ``release_frame``: the RELEASE sent when the instance stops

Frame building and parsing are pure functions (unit-tested); the exchanges only add a socket,
retransmission and a deadline.  UDP checksums of received frames are not checked: on veth links
with TX offload they may be unfinished (the simulated network turns offload off anyway).
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"
ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6
ZERO_IP = "0.0.0.0"
BROADCAST_IP = "255.255.255.255"
OPT_MASK, OPT_ROUTER, OPT_REQ_IP, OPT_LEASE, OPT_TYPE, OPT_SERVER, OPT_PARAMS, OPT_T1, OPT_T2, OPT_CLIENT_ID = (
    1, 3, 50, 51, 53, 54, 55, 58, 59, 61)
OPT_END = 255
NAK_RESTARTS = 3  # DISCOVERs again after a NAK, within the same deadline


class DhcpError(Exception):
    """The exchange did not give a lease (timeout, NAK); the text is shown to users."""


class DhcpRefused(DhcpError):
    """The server answered NAK."""


@dataclass(frozen=True)
class Lease:
    ip: str
    prefix: int
    router: str
    server_id: str
    server_mac: str
    mac: str
    lease_s: int
    t1_s: int
    obtained_at: float

    @property
    def expires(self) -> float:
        return self.obtained_at + self.lease_s

    @property
    def renew_at(self) -> float:
        return self.obtained_at + self.t1_s

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix}"


@dataclass(frozen=True)
class Reply:
    kind: int
    xid: int
    yiaddr: str
    chaddr: str
    options: dict[int, bytes]
    src_mac: str


# ---------------------------------------------------------------- pure: frames

def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:6])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def bootp(kind: int, *, xid: int, mac: str, ciaddr: str = ZERO_IP, requested: str = "",
          server_id: str = "", broadcast: bool = True) -> bytes:
    """The BOOTP/DHCP payload of a client message."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000 if broadcast else 0,
                       socket.inet_aton(ciaddr), socket.inet_aton(ZERO_IP), socket.inet_aton(ZERO_IP),
                       socket.inet_aton(ZERO_IP), mac_bytes(mac), b"", b"")
    opts = bytes([OPT_TYPE, 1, kind])
    opts += bytes([OPT_CLIENT_ID, 7, 1]) + mac_bytes(mac)
    if requested:
        opts += bytes([OPT_REQ_IP, 4]) + socket.inet_aton(requested)
    if server_id:
        opts += bytes([OPT_SERVER, 4]) + socket.inet_aton(server_id)
    if kind in (DISCOVER, REQUEST):
        params = bytes([OPT_MASK, OPT_ROUTER, OPT_LEASE, OPT_SERVER, OPT_T1, OPT_T2])
        opts += bytes([OPT_PARAMS, len(params)]) + params
    return head + MAGIC + opts + bytes([OPT_END])


def frame(payload: bytes, *, src_mac: str, dst_mac: bytes = BROADCAST_MAC, src_ip: str = ZERO_IP,
          dst_ip: str = BROADCAST_IP) -> bytes:
    """Ethernet + IPv4 + UDP 68→67 around a BOOTP payload, checksums filled in."""
    udp_len = 8 + len(payload)
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + ip + udp


def parse(data: bytes) -> Reply | None:
    """A server reply (BOOTP op 2 to UDP port 68) in an Ethernet frame, or None."""
    if len(data) < 14 + 20 + 8 + 240 or data[12:14] != b"\x08\x00":
        return None
    ihl = (data[14] & 0x0F) * 4
    if data[23] != socket.IPPROTO_UDP:
        return None
    udp = 14 + ihl
    if struct.unpack("!H", data[udp + 2: udp + 4])[0] != 68:
        return None
    b = data[udp + 8:]
    if len(b) < 240 or b[0] != 2 or b[236:240] != MAGIC:
        return None
    options: dict[int, bytes] = {}
    i = 240
    while i < len(b):
        code = b[i]
        if code == OPT_END:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(b):
            break
        n = b[i + 1]
        options[code] = b[i + 2: i + 2 + n]
        i += 2 + n
    kind = options.get(OPT_TYPE, b"\0")[0]
    return Reply(kind=kind, xid=struct.unpack("!I", b[4:8])[0], yiaddr=socket.inet_ntoa(b[16:20]),
                 chaddr=mac_text(b[28:34]), options=options, src_mac=mac_text(data[6:12]))


def lease_from(reply: Reply, *, mac: str, now: float) -> Lease:
    o = reply.options
    mask = socket.inet_ntoa(o[OPT_MASK]) if OPT_MASK in o else "255.255.255.0"
    lease_s = struct.unpack("!I", o[OPT_LEASE])[0] if OPT_LEASE in o else 3600
    t1 = struct.unpack("!I", o[OPT_T1])[0] if OPT_T1 in o else lease_s // 2
    return Lease(ip=reply.yiaddr, prefix=ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen,
                 router=socket.inet_ntoa(o[OPT_ROUTER][:4]) if OPT_ROUTER in o else "",
                 server_id=socket.inet_ntoa(o[OPT_SERVER]) if OPT_SERVER in o else "",
                 server_mac=reply.src_mac, mac=mac, lease_s=lease_s, t1_s=max(1, min(t1, lease_s)),
                 obtained_at=now)


def release_frame(lease: Lease, *, xid: int) -> bytes:
    payload = bootp(RELEASE, xid=xid, mac=lease.mac, ciaddr=lease.ip, server_id=lease.server_id,
                    broadcast=False)
    return frame(payload, src_mac=lease.mac, dst_mac=mac_bytes(lease.server_mac), src_ip=lease.ip,
                 dst_ip=lease.server_id)


def new_xid() -> int:
    return int.from_bytes(os.urandom(4), "big")


# ---------------------------------------------------------------- exchanges on a socket

def raw_socket(ifname: str) -> socket.socket:
    """An AF_PACKET socket on ``ifname`` of the calling thread's namespace, non-blocking."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        s.bind((ifname, ETH_P_IP))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def _transact(sock: socket.socket, out: bytes, *, xid: int, mac: str, want: set[int],
                    timeout_s: float, retry_s: float = 1.0, deadline: float | None = None) -> Reply:
    """Send ``out`` until a matching reply comes, retransmitting with backoff; DhcpError at
    ``deadline`` (loop time; default: ``timeout_s`` from now, which the error names)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s if deadline is None else deadline
    while True:
        await loop.sock_sendall(sock, out)
        resend = min(loop.time() + retry_s, deadline)
        while (left := resend - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
            except asyncio.TimeoutError:
                break
            r = parse(data)
            if r is not None and r.xid == xid and r.chaddr == mac and r.kind in want:
                return r
        if loop.time() >= deadline:
            raise DhcpError(f"no DHCP answer within {timeout_s:g}s")
        retry_s = min(retry_s * 2, 4.0)


async def _request(sock: socket.socket, payload: bytes, *, xid: int, mac: str, timeout_s: float,
                   clock: Callable[[], float], deadline: float | None = None, **addr: object) -> Lease:
    reply = await _transact(sock, frame(payload, src_mac=mac, **addr), xid=xid, mac=mac, want={ACK, NAK},  # type: ignore[arg-type]
                            timeout_s=timeout_s, deadline=deadline)
    if reply.kind == NAK:
        msg = reply.options.get(56, b"").decode(errors="replace")
        raise DhcpRefused(f"the DHCP server refused the address{': ' + msg if msg else ''}")
    return lease_from(reply, mac=mac, now=clock())


async def acquire(sock: socket.socket, mac: str, *, timeout_s: float = 5.0,
                  clock: Callable[[], float] = time.time) -> Lease:
    """DISCOVER → OFFER → REQUEST → ACK within ``timeout_s``.  A NAK to the REQUEST sends the
    client back to DISCOVER (RFC 2131 3.1.4) while time is left: when many containers start at
    once, a server that reserves nothing for an offer (dnsmasq with --no-ping) can offer one
    address to two clients, and refuses the later REQUEST with "address in use"."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for attempt in range(1, NAK_RESTARTS + 2):
        xid = new_xid()
        offer = await _transact(sock, frame(bootp(DISCOVER, xid=xid, mac=mac), src_mac=mac), xid=xid, mac=mac,
                                want={OFFER}, timeout_s=timeout_s, deadline=deadline)
        server = socket.inet_ntoa(offer.options[OPT_SERVER]) if OPT_SERVER in offer.options else ""
        payload = bootp(REQUEST, xid=xid, mac=mac, requested=offer.yiaddr, server_id=server)
        try:
            return await _request(sock, payload, xid=xid, mac=mac, timeout_s=timeout_s, clock=clock,
                                  deadline=deadline)
        except DhcpRefused:
            if attempt > NAK_RESTARTS or loop.time() >= deadline:
                raise
    raise AssertionError("unreachable")


async def reboot(sock: socket.socket, mac: str, ip: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> Lease:
    """Ask again for an address this interface holds (INIT-REBOOT, RFC 2131 4.3.2)."""
    xid = new_xid()
    payload = bootp(REQUEST, xid=xid, mac=mac, requested=ip)
    return await _request(sock, payload, xid=xid, mac=mac, timeout_s=timeout_s, clock=clock)


async def renew(sock: socket.socket, lease: Lease, *, timeout_s: float = 5.0,
                clock: Callable[[], float] = time.time) -> Lease:
    xid = new_xid()
    payload = bootp(REQUEST, xid=xid, mac=lease.mac, ciaddr=lease.ip, broadcast=False)
    new = await _request(sock, payload, xid=xid, mac=lease.mac, timeout_s=timeout_s, clock=clock,
                         dst_mac=mac_bytes(lease.server_mac), src_ip=lease.ip, dst_ip=lease.server_id)
    return replace(new, server_mac=lease.server_mac)
