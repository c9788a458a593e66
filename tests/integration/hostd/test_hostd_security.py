"""What a container may do to its neighbours, with a real hostd on the session's simulated L2
network (macvlan on one switch): without NET_RAW and NET_ADMIN one container cannot take another's
address (no `ip addr add`, no MAC change, no forged ARP), and the switch's view of the victim stays
right; `security.cap_add`, `user` and `read_only_rootfs` do what they say; the pids limit is the
cgroup's.  hostd sets up the network from the host side, so DHCP and health checks still work."""
from __future__ import annotations

from pathlib import Path

import msgspec

from libs import messages
from tests.integration.hostd.hostd_harness import (  # noqa: F401  (fixtures)
    HostdUnderTest, docker, hostd, spec)
from tests.support.inside import neighbour_mac, sh
from tests.support.wait import eventually

NET_ADMIN, NET_RAW = 12, 13   # capability bit numbers (linux/capability.h)
DENIED = "operation not permitted"


def caps(status: str, line: str = "CapEff") -> int:
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith(line + ":")), 16)


async def inspect(hostd: HostdUnderTest, instance: str) -> dict:
    [c] = await hostd.containers(instance)
    return await c.show()


def pids_max(pid: int) -> str:
    """pids.max of the process's cgroup (v1 `pids` controller or the v2 unified tree)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return (Path("/sys/fs/cgroup/pids") / path.lstrip("/") / "pids.max").read_text().strip()
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return (Path("/sys/fs/cgroup") / path.lstrip("/") / "pids.max").read_text().strip()
    raise AssertionError(f"no pids cgroup for pid {pid}")


def with_command_check(container: messages.ContainerSpec, command: list[str]) -> messages.ContainerSpec:
    check = messages.HealthCheckSpec(protocol="COMMAND", name="command", command=command, grace_period_s=0,
                                     interval_s=0.3, timeout_s=5, max_consecutive_failures=0)
    return msgspec.structs.replace(container, health_checks=[check])


async def healthy(hostd: HostdUnderTest, instance: str) -> messages.IpReport:
    return await eventually(lambda: next((r for r in hostd.reports if r.instance == instance and r.health
                                          and r.healthy), None), timeout=30, what=f"{instance} healthy")


async def test_a_container_cannot_take_anothers_address(hostd: HostdUnderTest) -> None:
    await hostd.start()
    await hostd.place("victim-1", app="victim", container=with_command_check(spec(), ["wget", "-q", "-O", "/dev/null",
                                                                                      "http://127.0.0.1:8080/"]))
    await hostd.place("intruder-1", app="intruder")
    b = await hostd.report("victim-1", "RUNNING")
    a = await hostd.report("intruder-1", "RUNNING")
    assert b.ip and a.ip and b.ip != a.ip and b.mac != a.mac   # DHCP by hostd, from the host side
    assert await neighbour_mac(hostd.cfg.net.bridge, b.ip) == b.mac

    # The defaults, as the engine holds them.
    host_config = (await inspect(hostd, "intruder-1"))["HostConfig"]
    assert set(host_config["CapDrop"]) == {"NET_RAW", "NET_ADMIN"} and not host_config["CapAdd"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"] and host_config["PidsLimit"] == 4096
    _, status = await sh(a.container_id, "cat /proc/1/status")
    assert not caps(status) & (1 << NET_RAW | 1 << NET_ADMIN) and not caps(status, "CapBnd") & (1 << NET_RAW)
    assert "NoNewPrivs:\t1" in status
    [intruder] = await hostd.containers("intruder-1")
    assert pids_max((await intruder.show())["State"]["Pid"]) == "4096"

    # From inside the intruder: take the victim's address, its MAC, or answer ARP for it.
    prefix = hostd.cfg.net.subnet.prefixlen
    attempts = {
        "ip addr add": f"ip addr add {b.ip}/{prefix} dev eth0",
        "ip link set address": f"ip link set dev eth0 address {b.mac}",
        "arping -U (gratuitous ARP)": f"arping -U -c 2 -s {b.ip} -I eth0 {b.ip}",
        "arping -A (ARP reply)": f"arping -A -c 2 -s {b.ip} -I eth0 {b.ip}",
    }
    for what, script in attempts.items():
        code, out = await sh(a.container_id, script)
        assert code != 0 and DENIED in out.lower(), f"{what}: exit {code}, {out!r}"
    # Root inside the container, and still nothing moved on its interface.
    code, out = await sh(a.container_id, "ip -o addr show dev eth0")
    assert b.ip not in out and a.ip in out

    # The switch side still maps the victim's address to the victim's MAC, and the victim answers.
    assert await neighbour_mac(hostd.cfg.net.bridge, b.ip) == b.mac
    # hostd's own work inside the netns and the command check (an exec) run with the dropped caps.
    assert (await healthy(hostd, "victim-1")).ip == b.ip


async def test_cap_add_user_and_read_only_root(hostd: HostdUnderTest) -> None:
    await hostd.start()
    raw = msgspec.structs.replace(spec(), security=messages.SecuritySpec(cap_add=["NET_RAW"]))
    locked = msgspec.structs.replace(spec(disk_mb=8), security=messages.SecuritySpec(user="1000:1000",
                                                                                       read_only_rootfs=True))
    await hostd.place("raw-1", app="raw", container=raw)
    await hostd.place("locked-1", app="locked", container=with_command_check(locked, ["id", "-u"]))
    r = await hostd.report("raw-1", "RUNNING")
    lk = await hostd.report("locked-1", "RUNNING")

    # cap_add gives NET_RAW back (a plain ARP request to the gateway works); NET_ADMIN stays dropped.
    host_config = (await inspect(hostd, "raw-1"))["HostConfig"]
    assert host_config["CapAdd"] == ["NET_RAW"] and host_config["CapDrop"] == ["NET_ADMIN"]
    _, status = await sh(r.container_id, "cat /proc/1/status")
    assert caps(status) & (1 << NET_RAW) and not caps(status) & (1 << NET_ADMIN)
    code, out = await sh(r.container_id, f"arping -c 1 -w 3 -I eth0 {hostd.cfg.net.gateway}")
    assert code == 0, out
    code, out = await sh(r.container_id, "ip addr add 198.18.255.254/32 dev eth0")
    assert code != 0 and DENIED in out.lower(), out

    # user: the container's processes and its execs run as 1000:1000.
    config = await inspect(hostd, "locked-1")
    assert config["Config"]["User"] == "1000:1000" and config["HostConfig"]["ReadonlyRootfs"] is True
    _, status = await sh(lk.container_id, "cat /proc/1/status")
    assert next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:] == ["1000"] * 4
    assert (await sh(lk.container_id, "id -u"))[1].strip() == "1000"
    # read_only_rootfs: the root refuses writes, even root's; the volume takes them.
    code, out = await sh(lk.container_id, "touch /etc/x", user="0")
    assert code != 0 and "read-only file system" in out.lower(), out
    code, out = await sh(lk.container_id, "touch /data/x && ls /data", user="0")
    assert code == 0 and "x" in out.split(), out
    # A command check on a read-only root, as that user.
    assert (await healthy(hostd, "locked-1")).ip == lk.ip


async def test_pids_limit_is_the_cgroups(hostd: HostdUnderTest) -> None:
    await hostd.start(NOOPS_HOSTD_PIDS_LIMIT="24")
    await hostd.place("forky-1", app="forky")
    f = await hostd.report("forky-1", "RUNNING")
    [c] = await hostd.containers("forky-1")
    data = await c.show()
    assert data["HostConfig"]["PidsLimit"] == 24 and pids_max(data["State"]["Pid"]) == "24"
    # More sleepers than the limit: the fork past it fails inside, the host is untouched.
    code, out = await sh(f.container_id, "i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; echo done")
    assert "can't fork" in out.lower() or "resource temporarily unavailable" in out.lower(), (code, out)
