"""The simulated L2 network of a local cluster: a Linux bridge as the "switch" and, per simulated
host, a veth pair whose root-namespace end stands for that host's physical NIC.

    root namespace                                 containers (macvlan, bridge mode)
    ─────────────────────────────────────────      ─────────────────────────────────
    nsw<k>  bridge = the switch, holds the gateway  ◀── eth0 of every container
      ├─ ns<k>p-h1 ══ ns<k>-h1   "NIC" of host h1  ◀── macvlan parent for hostd h1
      └─ ns<k>p-h2 ══ ns<k>-h2   "NIC" of host h2  ◀── macvlan parent for hostd h2
    dnsmasq (DHCP only, no DNS) listening on nsw<k>, leases in <run_dir>/dnsmasq-<k>.leases

Numbering: cluster index k (0 = `make up`, 1..29 = test sessions, 30 = bench/, chosen from the cluster name)
gets the container range 198.18.0.0/20 + k·4096, all inside 198.18.0.0/15 and clear of Docker's
198.19.255.0/24.  The first half of the range (from .16) is DHCP's, the second half the `pool`
IPAM's; the gateway is the range's first address, on the bridge, so the root namespace reaches
every container through the switch.

Two things this machine needs (see issue 3): TX checksum offload off on the simulated links
(a raw-socket DHCP client otherwise receives replies with unfinished UDP checksums), and an
ACCEPT for switch-to-switch traffic in DOCKER-USER (dockerd sets FORWARD to DROP and bridge
netfilter sends bridged frames through it).

Everything made here is found again by name, so teardown works from a fresh process too.
"""
from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools import infra

SUPERNET = ipaddress.ip_network("198.18.0.0/15")
RANGE_PREFIX = 20
MAX_INDEX = 29  # index 30 is the benchmarks', 31 would hold Docker's 198.19.255.0/24


def index_for(cluster: str) -> int:
    """0 for the `make up` cluster ("local"), 1..29 for any other name (test sessions)."""
    if cluster == "local":
        return 0
    return 1 + int(hashlib.sha256(cluster.encode()).hexdigest(), 16) % MAX_INDEX


@dataclass(frozen=True)
class SimNet:
    index: int
    run_dir: Path
    lease_s: int = 3600
    t1_s: int = 0  # 0: the server's default (half the lease); tests shorten it to see renewals

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        base = int(SUPERNET.network_address) + self.index * 2 ** (32 - RANGE_PREFIX)
        return ipaddress.ip_network(f"{ipaddress.ip_address(base)}/{RANGE_PREFIX}")

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def dhcp_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        half = self.subnet.num_addresses // 2
        return self.subnet.network_address + 16, self.subnet.network_address + half - 1

    @property
    def pool_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        half = self.subnet.num_addresses // 2
        return self.subnet.network_address + half, self.subnet.broadcast_address - 1

    @property
    def bridge(self) -> str:
        return f"nsw{self.index}"

    def nic(self, host: str) -> str:
        """The simulated physical NIC of ``host`` (the macvlan parent its hostd uses)."""
        return _ifname(f"ns{self.index}-", host)

    def port(self, host: str) -> str:
        return _ifname(f"ns{self.index}p-", host)

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"dnsmasq-{self.index}.pid"

    @property
    def leasefile(self) -> Path:
        return self.run_dir / f"dnsmasq-{self.index}.leases"

    def hostd_env(self, host: str) -> dict[str, str]:
        """What a hostd standing for ``host`` on this network is configured with."""
        return {"NOOPS_HOSTD_PARENT": self.nic(host), "NOOPS_HOSTD_POOL_GATEWAY": str(self.gateway)}


def _ifname(prefix: str, host: str) -> str:
    name = prefix + host
    if len(name) > 15:  # IFNAMSIZ - 1
        name = prefix + hashlib.sha256(host.encode()).hexdigest()[: 15 - len(prefix)]
    return name


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise infra.InfraError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def _exists(ifname: str) -> bool:
    return _ip("link", "show", "dev", ifname, check=False).returncode == 0


def _offload_off(ifname: str) -> None:
    if not shutil.which("ethtool"):
        raise infra.InfraError("ethtool is not installed (apt-get install ethtool)")
    subprocess.run(["ethtool", "-K", ifname, "tx", "off"], capture_output=True, check=True)


def _docker_user_rule(net: SimNet) -> list[str]:
    return ["DOCKER-USER", "-i", net.bridge, "-o", net.bridge, "-j", "ACCEPT"]


def allow_switch(net: SimNet) -> None:
    """Let frames between switch ports through dockerd's FORWARD DROP (no-op without dockerd)."""
    rule = _docker_user_rule(net)
    if subprocess.run(["iptables", "-n", "-L", "DOCKER-USER"], capture_output=True).returncode != 0:
        return  # no dockerd chain yet: FORWARD is not Docker's
    if subprocess.run(["iptables", "-C", *rule], capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-I", *rule], capture_output=True, check=True)


def up(net: SimNet) -> None:
    """Create the switch and start its DHCP server; harmless when already up."""
    net.run_dir.mkdir(parents=True, exist_ok=True)
    if not _exists(net.bridge):
        _ip("link", "add", net.bridge, "type", "bridge", "forward_delay", "0")
    _ip("addr", "replace", f"{net.gateway}/{RANGE_PREFIX}", "dev", net.bridge)
    _ip("link", "set", net.bridge, "up")
    allow_switch(net)
    start_dhcp(net)


def add_host(net: SimNet, host: str) -> str:
    """Plug a simulated host into the switch; returns its NIC's name."""
    nic, port = net.nic(host), net.port(host)
    if not _exists(nic):
        _ip("link", "add", nic, "type", "veth", "peer", "name", port)
    _ip("link", "set", port, "master", net.bridge)
    for ifname in (nic, port):
        _offload_off(ifname)
        _ip("link", "set", ifname, "up")
    return nic


def remove_host(net: SimNet, host: str) -> None:
    if _exists(net.nic(host)):
        _ip("link", "del", net.nic(host), check=False)  # takes its peer along
    if _exists(net.port(host)):
        _ip("link", "del", net.port(host), check=False)


def start_dhcp(net: SimNet) -> int:
    pid = infra.read_pid(net.pidfile)
    if pid is not None:
        return pid
    if not shutil.which("dnsmasq"):
        raise infra.InfraError("dnsmasq is not installed (apt-get install dnsmasq-base)")
    first, last = net.dhcp_range
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
            f"--interface={net.bridge}", "--bind-interfaces", "--except-interface=lo",
            f"--dhcp-range={first},{last},{net.subnet.netmask},{net.lease_s}",
            f"--dhcp-option=option:router,{net.gateway}",
            *([f"--dhcp-option=option:T1,{net.t1_s}"] if net.t1_s else []),
            f"--dhcp-leasefile={net.leasefile}", "--dhcp-authoritative", "--no-ping", "--log-dhcp",
            f"--log-facility={net.run_dir / 'logs' / f'dnsmasq-{net.index}.log'}"]
    (net.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    pid = infra.spawn(argv, pidfile=net.pidfile, logfile=net.run_dir / "logs" / f"dnsmasq-{net.index}.out")
    infra.wait_until(lambda: _listening_dhcp(pid), 10, "dnsmasq to listen")
    return pid


def _listening_dhcp(pid: int) -> bool:
    if not infra.pid_alive(pid):
        raise infra.InfraError("dnsmasq exited at start; see its log under .run/logs/")
    out = subprocess.run(["ss", "-Hulnp", "sport", "=", ":67"], capture_output=True, text=True).stdout
    return f"pid={pid}," in out


def leases(net: SimNet) -> list[dict[str, str]]:
    """dnsmasq's current leases: expiry, mac, ip."""
    try:
        text = net.leasefile.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3:
            out.append({"expires": f[0], "mac": f[1], "ip": f[2]})
    return out


def remove_volumes(root: Path) -> int:
    """Unmount and detach what hostd's loop driver left under ``root`` (teardown after a crash)."""
    return sum(remove_volumes_of(d) for d in sorted(root.glob("*")) if d.is_dir())


def remove_volumes_of(root: Path) -> int:
    """The same for one hostd's directory."""
    n = 0
    for img in sorted(root.glob("*.img")):
        mnt = img.with_suffix(".mnt")
        subprocess.run(["umount", str(mnt)], capture_output=True)
        devs = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(img)], capture_output=True, text=True)
        for dev in devs.stdout.split():
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        img.unlink(missing_ok=True)
        try:
            mnt.rmdir()
        except OSError:
            pass
        n += 1
    return n


def down(net: SimNet, hosts: tuple[str, ...] | list[str] = ()) -> None:
    """Stop dnsmasq (by its PID file), remove host NICs, the switch and the DOCKER-USER rule."""
    infra.stop_pidfile(net.pidfile, timeout=5)
    for host in hosts:
        remove_host(net, host)
    # Ports of hosts nobody named (a test that crashed): every veth enslaved to our bridge.
    if _exists(net.bridge):
        for line in _ip("-o", "link", "show", "master", net.bridge, check=False).stdout.splitlines():
            port = line.split(":")[1].strip().split("@")[0]
            _ip("link", "del", port, check=False)
        _ip("link", "del", net.bridge, check=False)
    while subprocess.run(["iptables", "-D", *_docker_user_rule(net)], capture_output=True).returncode == 0:
        pass
    net.leasefile.unlink(missing_ok=True)
