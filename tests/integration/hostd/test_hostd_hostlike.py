"""Containers that behave like whole hosts: macvlan + DHCP on the simulated L2 network, volumes,
egress and memory limits, restarts and faults.  Real netlink, real dnsmasq, real Docker."""
from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devtools import simnet
from services.hostd import netns
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HostdUnderTest, docker, hostd, spec)
from tests.support.wait import eventually

SLEEP = ["sleep", "3600"]


def tcp_ok(ip: str, port: int = 8080) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


async def exec_in(hostd: HostdUnderTest, instance: str, *cmd: str) -> tuple[int, str]:
    [c] = await hostd.containers(instance)
    out = subprocess.run(["docker", "exec", c.id, *cmd], capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


def leases(hostd: HostdUnderTest) -> dict[str, str]:
    return {lease["mac"]: lease["ip"] for lease in simnet.leases(hostd.cfg.net)}


async def running_then_stopped(hostd: HostdUnderTest, instance: str) -> tuple[Any, int]:
    """Place ``instance``, wait for RUNNING, stop hostd (the container keeps running): (report, pid)."""
    await hostd.start()
    await hostd.place(instance)
    first = await hostd.report(instance, "RUNNING")
    await hostd.stop()
    [c] = await hostd.containers(instance)
    return first, (await c.show())["State"]["Pid"]


@pytest.fixture
async def second(hostd: HostdUnderTest, cluster_cfg, nc, docker):  # noqa: F811
    """Another simulated host on the same switch."""
    h = HostdUnderTest(cfg=cluster_cfg, nc=nc, docker=docker, host=f"hy{uuid.uuid4().hex[:6]}")
    simnet.add_host(cluster_cfg.net, h.host)
    await h.watch()
    try:
        yield h
    finally:
        await h.cleanup()


async def test_dhcp_address_lease_and_reach_across_hosts(hostd: HostdUnderTest, second: HostdUnderTest) -> None:
    await hostd.start()
    await second.start()
    await hostd.place("web-1")
    await second.place("web-2")
    a = await hostd.report("web-1", "RUNNING")
    b = await second.report("web-2", "RUNNING")
    net = hostd.cfg.net
    for r, h in ((a, hostd), (b, second)):
        assert ipaddress.ip_address(r.ip) in net.subnet
        assert r.parent == h.nic and r.mac and r.lease_expires > r.at
        assert leases(hostd).get(r.mac) == r.ip  # the DHCP server holds exactly this lease
    assert a.ip != b.ip
    # Inside: eth0 with that MAC and address, default route via the switch's gateway.
    _, out = await exec_in(hostd, "web-1", "ip", "route")
    assert f"default via {net.gateway}" in out
    _, out = await exec_in(hostd, "web-1", "ip", "addr", "show", "eth0")
    assert a.mac in out and f"{a.ip}/20" in out
    # Root namespace → container through the switch; container → container on another host.
    assert await eventually(lambda: tcp_ok(a.ip), timeout=10, what="httpd on web-1")
    code, out = await exec_in(hostd, "web-1", "wget", "-q", "-O", "-", f"http://{b.ip}:8080/")
    assert code == 0 and "noops" in out
    # Docker knows no network for it.
    [c] = await hostd.containers("web-1")
    assert (await c.show())["HostConfig"]["NetworkMode"] == "none"


async def test_lease_renewed_at_t1_and_released_on_stop(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    r = await hostd.report("web-1", "RUNNING")
    # The session's dnsmasq sets T1 = 3 s: hostd renews on its own.
    def server_expiry() -> int:
        return next((int(x["expires"]) for x in simnet.leases(hostd.cfg.net) if x["mac"] == r.mac), 0)
    await eventually(lambda: server_expiry() > r.lease_expires + 1, timeout=15, what="lease renewed")
    # ... and reports the later expiry (a RUNNING report with a new message id).
    later = await eventually(lambda: next((x for x in hostd.reports if x.instance == "web-1" and x.state == "RUNNING"
                                           and x.lease_expires > r.lease_expires), None),
                             timeout=15, what="renewed lease reported")
    assert (later.ip, later.mac, later.container_id) == (r.ip, r.mac, r.container_id)
    await hostd.place("web-1", action="stop", epoch=2)
    await hostd.report("web-1", "KILLED")
    await eventually(lambda: r.mac not in leases(hostd), timeout=5, what="lease released")


async def test_restart_adopts_address_and_lease(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1")
    first = await hostd.report("web-1", "RUNNING")
    await hostd.stop()  # like SIGKILL for what matters here: nothing is cleaned up on the way out
    n = len(hostd.reports)
    await hostd.start()
    again = await hostd.report("web-1", "RUNNING", after=n)
    assert (again.ip, again.mac, again.container_id) == (first.ip, first.mac, first.container_id)
    assert again.lease_expires >= first.lease_expires  # re-requested, not a new lease
    assert leases(hostd) .get(first.mac) == first.ip and len([m for m in leases(hostd) if m == first.mac]) == 1


@pytest.mark.parametrize("while_away", ["killed", "removed"])
async def test_lease_of_a_container_that_ended_while_hostd_was_away_is_released(
        hostd: HostdUnderTest, docker, while_away: str) -> None:  # noqa: F811
    await hostd.start()
    await hostd.place("gone-1")
    first = await hostd.report("gone-1", "RUNNING")
    assert leases(hostd).get(first.mac) == first.ip
    await hostd.stop()
    container = docker.containers.container(first.container_id)
    if while_away == "killed":
        await container.kill()
    else:
        await container.delete(force=True)
    await hostd.start()
    await eventually(lambda: first.mac not in leases(hostd), timeout=10, what="the orphaned lease released")
    if while_away == "killed":  # and the death is reported with its reason
        failed = await hostd.report("gone-1", "FAILED", timeout=10)
        assert failed.container_id == first.container_id


async def test_half_made_start_is_finished_at_adoption(hostd: HostdUnderTest, docker) -> None:  # noqa: F811
    """A container left running without its interface (hostd died mid-start) gets one at adoption."""
    first, pid = await running_then_stopped(hostd, "web-1")
    await netns.in_netns(pid, lambda: subprocess.run(["ip", "link", "del", "eth0"], check=True))
    subprocess.run(["ip", "link", "add", "nmdeadbeef00", "link", hostd.nic, "type", "macvlan"], check=True)
    n = len(hostd.reports)
    await hostd.start()
    again = await hostd.report("web-1", "RUNNING", after=n)
    assert again.ip and again.mac != first.mac
    assert subprocess.run(["ip", "link", "show", "nmdeadbeef00"], capture_output=True).returncode != 0
    assert await eventually(lambda: tcp_ok(again.ip), timeout=10, what="httpd at the new address")


async def test_unaddressed_eth0_is_replaced_at_adoption(hostd: HostdUnderTest) -> None:
    """hostd died after making eth0 inside the container but before addressing it: the restart
    makes a fresh eth0 in its place (a new MAC, a new lease) rather than failing on the name."""
    first, pid = await running_then_stopped(hostd, "web-1")
    await netns.in_netns(pid, lambda: subprocess.run(["ip", "addr", "flush", "dev", "eth0"], check=True))
    n = len(hostd.reports)
    await hostd.start()
    again = await hostd.report("web-1", "RUNNING", after=n)
    assert again.ip and again.mac != first.mac and leases(hostd).get(again.mac) == again.ip
    iface = await netns.in_netns(pid, netns.read_iface, "eth0")
    assert iface is not None and iface.mac == again.mac and iface.cidr == f"{again.ip}/20"
    assert await eventually(lambda: tcp_ok(again.ip), timeout=10, what="httpd at the new address")


async def test_pool_mode_uses_the_placed_address(hostd: HostdUnderTest) -> None:
    net = hostd.cfg.net
    address = f"{net.pool_range[0] + 7}/20"
    await hostd.start(NOOPS_HOSTD_IPAM="pool")
    await hostd.place("web-1", address=address)
    r = await hostd.report("web-1", "RUNNING")
    assert r.ip == address.split("/")[0] and r.lease_expires == 0
    assert r.mac not in leases(hostd)
    assert await eventually(lambda: tcp_ok(r.ip), timeout=10, what="httpd at the pool address")
    await hostd.place("web-2")  # no address reserved
    failed = await hostd.report("web-2", "FAILED")
    assert "no address was reserved" in failed.reason
    assert await hostd.containers("web-2") == []


async def test_a_dhcp_address_is_announced_on_the_dhcp_socket(hostd: HostdUnderTest) -> None:
    """With DHCP the announcement goes out on the exchange's own packet socket (one close less on
    the way to RUNNING): the switch sees a gratuitous ARP for the leased address from the
    container's MAC."""
    import socket
    net = hostd.cfg.net
    tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(netns.ETH_P_ARP))
    try:
        tap.bind((net.bridge, netns.ETH_P_ARP))
        tap.setblocking(False)
        await hostd.start()
        await hostd.place("web-1")
        r = await hostd.report("web-1", "RUNNING")
        want = netns.garp_frame(r.mac, r.ip)
        seen: list[bytes] = []

        def announced() -> bool:
            while True:
                try:
                    seen.append(tap.recv(2048)[:len(want)])
                except BlockingIOError:
                    return want in seen
        assert await eventually(announced, timeout=5, what=f"a gratuitous ARP for {r.ip} at {r.mac}")
    finally:
        tap.close()


async def test_a_reused_address_is_announced_to_the_switch(hostd: HostdUnderTest) -> None:
    """The gateway (the switch's bridge) still maps an address to the MAC of the container that
    had it before; hostd's gratuitous ARP moves the entry to the new container's MAC before any
    traffic, so replies (a DHCP ACK to a renewal) are not sent to the old MAC."""
    net = hostd.cfg.net
    ip = str(net.pool_range[0] + 9)
    subprocess.run(["ip", "neigh", "replace", ip, "lladdr", "02:00:00:00:00:aa", "dev", net.bridge, "nud", "stale"],
                   check=True)
    try:
        await hostd.start(NOOPS_HOSTD_IPAM="pool")
        await hostd.place("web-1", address=f"{ip}/20")
        r = await hostd.report("web-1", "RUNNING")

        def neighbour() -> str:
            return subprocess.run(["ip", "neigh", "show", ip, "dev", net.bridge], capture_output=True, text=True).stdout
        assert await eventually(lambda: r.mac in neighbour(), timeout=5, what="the bridge's entry at the new MAC")
    finally:
        subprocess.run(["ip", "neigh", "del", ip, "dev", net.bridge], capture_output=True)


async def test_egress_limit_installs_tbf(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("web-1", container=spec(egress_mbit=50))
    await hostd.place("web-2")
    await hostd.report("web-1", "RUNNING")
    await hostd.report("web-2", "RUNNING")
    _, out = await exec_in(hostd, "web-1", "cat", "/proc/net/dev")  # eth0 exists
    [c1] = await hostd.containers("web-1")
    [c2] = await hostd.containers("web-2")
    pid1 = (await c1.show())["State"]["Pid"]
    pid2 = (await c2.show())["State"]["Pid"]
    assert await netns.in_netns(pid1, netns.egress_qdisc, "eth0") == "tbf"
    assert await netns.in_netns(pid2, netns.egress_qdisc, "eth0") != "tbf"
    q = subprocess.run(["nsenter", "-t", str(pid1), "-n", "tc", "qdisc", "show", "dev", "eth0"],
                       capture_output=True, text=True).stdout
    assert "rate 50Mbit" in q


async def test_volume_caps_writes_with_enospc(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("db-1", container=spec(cmd=SLEEP, disk_mb=8, volume_path="/var/data"))
    await hostd.report("db-1", "RUNNING")
    code, out = await exec_in(hostd, "db-1", "sh", "-c", "dd if=/dev/zero of=/var/data/fill bs=1M count=32")
    assert code != 0 and "No space left on device" in out
    code, out = await exec_in(hostd, "db-1", "df", "-m", "/var/data")
    assert code == 0
    assert any(beat.disk_free_mb.get("loop", -1) >= 0 for beat in hostd.heartbeats)
    root = hostd.cfg.volume_dir / f"{hostd.cfg.cluster}-{hostd.host}"
    assert (root / "db-1.img").exists()
    await hostd.place("db-1", action="stop", epoch=2)
    await hostd.report("db-1", "KILLED")
    assert not (root / "db-1.img").exists() and not (root / "db-1.mnt").exists()


async def test_limits_visible_and_oom_reported(hostd: HostdUnderTest) -> None:
    ooms = REGISTRY.get_sample_value("noops_hostd_oom_events_total") or 0.0
    await hostd.start()
    hog = ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    await hostd.place("hog-1", container=spec(cmd=hog, mem_mb=8, cpus=0.25))
    failed = await hostd.report("hog-1", "FAILED", timeout=60)
    assert failed.reason == "OOMKilled"
    [c] = await hostd.containers("hog-1")
    info = await c.show()
    assert info["HostConfig"]["Memory"] == 8 * 1024 * 1024 and info["HostConfig"]["NanoCpus"] == 250_000_000
    # Not State.OOMKilled: on cgroup v1 the engine does not always set it (the reason hostd also
    # listens for the 'oom' event); the kill itself and the event are what is sure.
    assert info["State"]["ExitCode"] == 137
    await eventually(lambda: (REGISTRY.get_sample_value("noops_hostd_oom_events_total") or 0.0) > ooms,
                     what="the engine's oom event counted")


@pytest.mark.parametrize(("env", "container", "needle"), [
    pytest.param({"NOOPS_HOSTD_PARENT": "nsnope0"}, None, "parent NIC nsnope0 does not exist", id="unknown-parent"),
    pytest.param({"NOOPS_HOSTD_VOLUME_CAPACITY_MB": "16"}, {"disk_mb": 64}, "is full: 64 MiB asked", id="pool-full"),
    pytest.param({}, {"image": "noops/nope:latest"}, "not found on host", id="image-missing"),
    pytest.param({}, {"cmd": ["false"]}, "exited with code 1", id="exits-at-once"),
])
async def test_faults_fail_with_a_reason_and_hostd_keeps_serving(hostd: HostdUnderTest, env, container,
                                                                 needle) -> None:
    await hostd.start(**env)
    await hostd.place("bad-1", container=spec(**(container or {})))
    failed = await hostd.report("bad-1", "FAILED")
    assert needle in failed.reason
    if not env:
        await hostd.place("good-1")
        await hostd.report("good-1", "RUNNING")


async def test_dhcp_timeout_fails_with_reason(hostd: HostdUnderTest) -> None:
    """A NIC on no switch: no DHCP server answers."""
    nic = f"nsq{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", nic, "type", "veth", "peer", "name", nic + "p"], check=True)
    try:
        for n in (nic, nic + "p"):
            subprocess.run(["ip", "link", "set", n, "up"], check=True)
        await hostd.start(NOOPS_HOSTD_PARENT=nic, NOOPS_HOSTD_DHCP_TIMEOUT_S="1")
        await hostd.place("web-1")
        failed = await hostd.report("web-1", "FAILED")
        assert "no DHCP answer within 1s" in failed.reason and hostd.host in failed.reason
        assert await hostd.containers("web-1") == []
    finally:
        subprocess.run(["ip", "link", "del", nic], capture_output=True)


def test_vlan_parent() -> None:
    """802.1q: the parent becomes <nic>.<vlan>.  This kernel has no 8021q module."""
    probe = subprocess.run(["ip", "link", "add", "link", "lo", "name", "nsvlanprobe", "type", "vlan", "id", "2"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no 802.1q VLAN support in this kernel: {probe.stderr.strip()}")
    subprocess.run(["ip", "link", "del", "nsvlanprobe"], capture_output=True)
    subprocess.run(["ip", "link", "add", "nsvt0", "type", "dummy"], check=True)
    try:
        assert netns.ensure_vlan("nsvt0", 200) == "nsvt0.200"
    finally:
        subprocess.run(["ip", "link", "del", "nsvt0"], capture_output=True)


async def test_twenty_instances_leave_nothing_behind(hostd: HostdUnderTest) -> None:
    async def counts() -> dict[str, Any]:
        links = await netns.in_root(netns.count_links, network_prefix)
        loops = (subprocess.run(["losetup", "-n", "-O", "BACK-FILE"], capture_output=True,
                                   text=True).stdout.count(str(root)))
        # Leases as a set: earlier tests' leftovers may expire (120 s in tests) while this one runs.
        return {"links": links, "loops": loops, "leases": set(leases(hostd)), "containers": len(await hostd.containers()),
                "volumes": len(list(root.glob("*.img"))) if root.exists() else 0}

    from services.hostd.network import LINK_PREFIX as network_prefix
    root = hostd.cfg.volume_dir / f"{hostd.cfg.cluster}-{hostd.host}"
    await hostd.start()
    before = await counts()
    n = 20
    for i in range(n):
        await hostd.place(f"leak-{i}", container=spec(cmd=SLEEP, disk_mb=4 if i % 2 else 0, egress_mbit=10, mem_mb=16))
    running = await asyncio.gather(*(hostd.report(f"leak-{i}", "RUNNING", timeout=90) for i in range(n)))
    assert len({r.ip for r in running}) == n
    during = await counts()
    assert len(during["leases"] - before["leases"]) == n and during["volumes"] == before["volumes"] + n // 2
    assert during["loops"] == before["loops"] + n // 2 and during["containers"] == n
    for i in range(n):
        await hostd.place(f"leak-{i}", action="stop", epoch=2)
    await asyncio.gather(*(hostd.report(f"leak-{i}", "KILLED", timeout=90) for i in range(n)))
    assert await hostd.containers() == []
    async def left_behind() -> dict[str, object]:
        now = await counts()
        return {k: now[k] - before[k] for k in now}  # a set difference for leases

    async def nothing_left() -> bool:
        return not any((await left_behind()).values())
    try:
        await eventually(nothing_left, timeout=10, what="nothing left behind")
    except AssertionError:
        raise AssertionError(f"left behind (after minus before): {await left_behind()}") from None
