"""Pure parts of hostd's network step: DHCP frames both ways, lease arithmetic, tc parameters,
volume binds, and the simulated network's numbering."""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from pathlib import Path

import pytest

from devtools import simnet
from libs import messages
from services.hostd import containers as ct
from services.hostd import dhcp, netns, network

MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:fe"


def server_reply(kind: int, *, xid: int, yiaddr: str, options: dict[int, bytes]) -> bytes:
    """A frame as dnsmasq would send it (op 2, to port 68)."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, socket.inet_aton("0.0.0.0"),
                       socket.inet_aton(yiaddr), socket.inet_aton("0.0.0.0"), socket.inet_aton("0.0.0.0"),
                       dhcp.mac_bytes(MAC), b"", b"")
    opts = bytes([dhcp.OPT_TYPE, 1, kind]) + b"".join(bytes([k, len(v)]) + v for k, v in options.items())
    payload = head + dhcp.MAGIC + opts + bytes([dhcp.OPT_END])
    udp = struct.pack("!HHHH", 67, 68, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton("198.18.0.1"),
                     socket.inet_aton("255.255.255.255"))
    return b"\xff" * 6 + dhcp.mac_bytes(SERVER_MAC) + b"\x08\x00" + ip + udp


def test_discover_frame_is_broadcast_from_the_interface_mac() -> None:
    f = dhcp.frame(dhcp.bootp(dhcp.DISCOVER, xid=7, mac=MAC), src_mac=MAC)
    assert f[:6] == b"\xff" * 6 and dhcp.mac_text(f[6:12]) == MAC and f[12:14] == b"\x08\x00"
    ip = f[14:34]
    assert dhcp._checksum(ip) == 0  # a valid header sums to zero
    assert socket.inet_ntoa(ip[16:20]) == "255.255.255.255"
    payload = f[42:]
    assert payload[0] == 1 and struct.unpack("!I", payload[4:8])[0] == 7
    assert dhcp.mac_text(payload[28:34]) == MAC and payload[236:240] == dhcp.MAGIC


@pytest.mark.parametrize(("options", "expect"), [
    pytest.param({dhcp.OPT_MASK: socket.inet_aton("255.255.240.0"), dhcp.OPT_ROUTER: socket.inet_aton("198.18.0.1"),
                  dhcp.OPT_LEASE: struct.pack("!I", 120), dhcp.OPT_SERVER: socket.inet_aton("198.18.0.1")},
                 (20, "198.18.0.1", 120, 60), id="t1-defaults-to-half"),
    pytest.param({dhcp.OPT_MASK: socket.inet_aton("255.255.255.0"), dhcp.OPT_LEASE: struct.pack("!I", 120),
                  dhcp.OPT_T1: struct.pack("!I", 3)},
                 (24, "", 120, 3), id="server-t1"),
])
def test_ack_parses_into_a_lease(options: dict[int, bytes], expect: tuple[int, str, int, int]) -> None:
    reply = dhcp.parse(server_reply(dhcp.ACK, xid=9, yiaddr="198.18.0.20", options=options))
    assert reply is not None and reply.kind == dhcp.ACK and reply.xid == 9 and reply.chaddr == MAC
    lease = dhcp.lease_from(reply, mac=MAC, now=1000.0)
    assert (lease.prefix, lease.router, lease.lease_s, lease.t1_s) == expect
    assert lease.ip == "198.18.0.20" and lease.server_mac == SERVER_MAC
    assert lease.expires == 1000.0 + expect[2] and lease.renew_at == 1000.0 + expect[3]


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00" * 400, id="not-ip"),
    pytest.param(dhcp.frame(dhcp.bootp(dhcp.DISCOVER, xid=1, mac=MAC), src_mac=MAC), id="client-message-to-67"),
])
def test_parse_ignores_what_is_not_a_server_reply(data: bytes) -> None:
    assert dhcp.parse(data) is None


def test_release_is_unicast_to_the_server_from_the_lease() -> None:
    lease = dhcp.Lease(ip="198.18.0.20", prefix=20, router="198.18.0.1", server_id="198.18.0.1",
                       server_mac=SERVER_MAC, mac=MAC, lease_s=120, t1_s=60, obtained_at=0)
    f = dhcp.release_frame(lease, xid=5)
    assert dhcp.mac_text(f[:6]) == SERVER_MAC and dhcp.mac_text(f[6:12]) == MAC
    assert socket.inet_ntoa(f[26:30]) == "198.18.0.20" and socket.inet_ntoa(f[30:34]) == "198.18.0.1"
    payload = f[42:]
    assert socket.inet_ntoa(payload[12:16]) == "198.18.0.20"  # ciaddr
    assert bytes([dhcp.OPT_TYPE, 1, dhcp.RELEASE]) in payload[240:]


@pytest.mark.parametrize(("mbit", "rate", "burst"), [
    pytest.param(10, "10mbit", 32 * 1024, id="small-rate-min-burst"),
    pytest.param(1000, "1000mbit", 1_250_000, id="gigabit-10ms-burst"),
])
def test_tbf_params(mbit: int, rate: str, burst: int) -> None:
    assert netns.tbf_params(mbit) == {"rate": rate, "burst": burst, "latency": "50ms"}


def test_temp_link_names_fit_ifnamsiz_and_differ() -> None:
    names = {network.temp_link_name(f"web-{i}") for i in range(100)}
    assert len(names) == 100 and all(len(n) <= 15 and n.startswith(network.LINK_PREFIX) for n in names)


def test_volume_is_bound_at_volume_path_and_pool_address_labelled() -> None:
    spec = messages.ContainerSpec(image="i", cmd=[], env={}, labels={}, cpus=1, mem_mb=8, ports=[], disk_mb=10,
                                  egress_mbit=5, volume_path="/srv")
    p = messages.Placement(instance="a-1", app="a", version=1, host="h1", epoch=1, action="start", spec=spec,
                           address="198.18.8.3/20")
    config = ct.create_config(p, "c", "h1", "/v/a-1.mnt")
    assert config["HostConfig"]["Binds"] == ["/v/a-1.mnt:/srv"]
    assert config["Labels"][ct.LABEL_ADDRESS] == "198.18.8.3/20" and config["Labels"][ct.LABEL_EGRESS] == "5"
    assert "Binds" not in ct.create_config(p, "c", "h1")["HostConfig"]


@pytest.mark.parametrize(("cluster", "index"), [
    pytest.param("local", 0, id="make-up"),
    pytest.param("t1234abcd", simnet.index_for("t1234abcd"), id="test-session"),
])
def test_simnet_numbering_stays_inside_the_lab_range(cluster: str, index: int) -> None:
    net = simnet.SimNet(index=simnet.index_for(cluster), run_dir=Path("/tmp"))
    assert net.index == index and (cluster == "local") == (index == 0)
    lab = ipaddress.ip_network("198.18.0.0/15")
    docker = ipaddress.ip_network("198.19.255.0/24")
    assert net.subnet.subnet_of(lab) and not net.subnet.overlaps(docker)  # type: ignore[arg-type]
    lo, hi = net.dhcp_range
    plo, phi = net.pool_range
    assert net.gateway < lo <= hi < plo <= phi < net.subnet.broadcast_address
    assert len(net.bridge) <= 15 and len(net.nic("hx123456")) <= 15 and len(net.port("a" * 60)) <= 15


def test_every_test_index_avoids_docker_bridge() -> None:
    docker = ipaddress.ip_network("198.19.255.0/24")
    for i in range(simnet.MAX_INDEX + 1):
        assert not simnet.SimNet(index=i, run_dir=Path("/tmp")).subnet.overlaps(docker)


def test_gratuitous_arp_frame() -> None:
    """Broadcast ARP request, sender and target both the new address (RFC 5227 announcement)."""
    f = netns.garp_frame("02:42:c6:12:00:07", "198.18.0.7")
    mac, ip = bytes.fromhex("0242c6120007"), bytes([198, 18, 0, 7])
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    assert f[14:22] == bytes([0, 1, 8, 0, 6, 4, 0, 1])        # Ethernet, IPv4, request
    assert f[22:28] == mac and f[28:32] == ip and f[32:38] == b"\0" * 6 and f[38:42] == ip
    assert len(f) == 42


def test_random_macs_are_unicast_locally_administered_and_differ() -> None:
    macs = {netns.random_mac() for _ in range(200)}
    assert len(macs) == 200
    for mac in macs:
        first = int(mac[:2], 16)
        assert len(dhcp.mac_bytes(mac)) == 6 and first & 0x01 == 0 and first & 0x02 == 0x02


async def _serve(sock: socket.socket, answers: list[tuple[int, str]]) -> list[int]:
    """A scripted DHCP server on the other end of a datagram pair: each client message gets the
    next (kind, address) answer with its xid; returns the kinds of the messages it got."""
    loop = asyncio.get_running_loop()
    got = []
    for kind, yiaddr in answers:
        data = await loop.sock_recv(sock, 4096)
        payload = data[42:]
        got.append(payload[242])  # option 53 comes first: 53, 1, kind
        xid = struct.unpack("!I", payload[4:8])[0]
        options = {dhcp.OPT_SERVER: socket.inet_aton("198.18.0.1"), dhcp.OPT_LEASE: struct.pack("!I", 120)}
        await loop.sock_sendall(sock, server_reply(kind, xid=xid, yiaddr=yiaddr, options=options))
    return got


@pytest.mark.parametrize(("answers", "ip"), [
    pytest.param([(dhcp.OFFER, "198.18.0.20"), (dhcp.ACK, "198.18.0.20")], "198.18.0.20", id="plain"),
    pytest.param([(dhcp.OFFER, "198.18.0.20"), (dhcp.NAK, "0.0.0.0"), (dhcp.OFFER, "198.18.0.21"),
                  (dhcp.ACK, "198.18.0.21")], "198.18.0.21", id="nak-then-discover-again"),
])
async def test_acquire_discovers_again_after_a_nak(answers: list[tuple[int, str]], ip: str) -> None:
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.setblocking(False)
    server.setblocking(False)
    with client, server:
        served = asyncio.create_task(_serve(server, answers))
        lease = await dhcp.acquire(client, MAC, timeout_s=2.0)
        kinds = await served
    assert lease.ip == ip
    assert kinds == [dhcp.DISCOVER, dhcp.REQUEST] * (len(answers) // 2)


async def test_acquire_gives_up_after_bounded_naks() -> None:
    answers = [(dhcp.OFFER, "198.18.0.20"), (dhcp.NAK, "0.0.0.0")] * (dhcp.NAK_RESTARTS + 1)
    client, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.setblocking(False)
    server.setblocking(False)
    with client, server:
        served = asyncio.create_task(_serve(server, answers))
        with pytest.raises(dhcp.DhcpRefused, match="refused the address"):
            await dhcp.acquire(client, MAC, timeout_s=2.0)
        assert len(await served) == len(answers)
