"""Shared set-up of the network benchmarks: a private simulated network (its own /20, switch and
dnsmasq, apart from `make up`'s and the tests'), containers on it through hostd's own network
step, plain veth namespaces, and cleanup of all of it even on failure.

Everything here is created by the benchmark and removed by ``Lab.close()``; processes are ended
by PID, containers carry the label ``noops.bench=<tag>``.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devtools import infra, simnet
from services.hostd.network import Network

IMAGE = "noops/base:latest"
PY = sys.executable
BENCH_INDEX = 30  # 198.19.224.0/20: neither `make up` (0) nor test sessions (1..29)

# Both echo programs stamp the CPU they run on (sched_getcpu) so the benchmark can tell round
# trips whose ends shared a CPU from those that crossed CPUs: on a small VM a cross-CPU wake-up
# costs more than the whole network path (see bench/RESULTS.md, network latency).
ECHO_SERVER = r"""
import ctypes, socket, sys
getcpu = ctypes.CDLL(None).sched_getcpu
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(64)
        if not d: break
        while len(d) < 64:
            more = c.recv(64 - len(d))
            if not more: break
            d += more
        c.sendall(bytes([getcpu()]) + d[1:])  # first byte: the server's CPU
    c.close()
"""

ECHO_CLIENT = r"""
import ctypes, json, os, socket, sys, time
getcpu = ctypes.CDLL(None).sched_getcpu
ip, port, n, cpus = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if cpus:
    os.sched_setaffinity(0, {int(x) for x in cpus.split(",")})
c = socket.create_connection((ip, port), timeout=5); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 64; out = []; same = []
for _ in range(n + 200):
    t = time.perf_counter_ns(); c.sendall(msg); got = b""
    while len(got) < 64:
        got += c.recv(64 - len(got))
    out.append(time.perf_counter_ns() - t); same.append(got[0] == getcpu())
c.close()
print(json.dumps({"ns": out[200:], "same_cpu": sum(same[200:])}))  # the first 200 warm caches and ARP
"""


def sh(*argv: str, check: bool = True) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="noops-bench-")))
    procs: list[subprocess.Popen] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    @property
    def net(self) -> simnet.SimNet:
        return simnet.SimNet(index=BENCH_INDEX, run_dir=self.run_dir)

    def up(self) -> None:
        infra.ensure_dockerd(self.run_dir)
        simnet.up(self.net)

    def add_host(self, name: str) -> str:
        self.hosts.append(name)
        return simnet.add_host(self.net, name)

    def container(self, *extra: str, cmd: tuple[str, ...] = ("sleep", "3600")) -> tuple[str, int]:
        cid = sh("docker", "run", "-d", "--label", f"noops.bench={self.tag}", *extra, IMAGE, *cmd).strip()
        pid = int(sh("docker", "inspect", "-f", "{{.State.Pid}}", cid).strip())
        return cid, pid

    async def attach(self, host: str, instance: str, pid: int, egress_mbit: int = 0) -> str:
        network = Network(host=host, parent=self.net.nic(host))
        att = await network.attach(instance, pid, egress_mbit=egress_mbit)
        return att.ip

    def netns_pair(self, a_ip: str, b_ip: str, prefix: int) -> tuple[int, int]:
        """Two namespaces joined by one veth pair (the 'physical' baseline)."""
        pa = self.spawn(["unshare", "-n", "sleep", "3600"])
        pb = self.spawn(["unshare", "-n", "sleep", "3600"])
        va, vb = f"nsb{self.tag}a", f"nsb{self.tag}b"
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        self.links.append(va)
        for v, p, ip in ((va, pa, a_ip), (vb, pb, b_ip)):
            sh("ip", "link", "set", v, "netns", str(p.pid))
            sh("nsenter", "-t", str(p.pid), "-n", "ip", "addr", "add", f"{ip}/{prefix}", "dev", v)
            sh("nsenter", "-t", str(p.pid), "-n", "ip", "link", "set", v, "up")
            sh("nsenter", "-t", str(p.pid), "-n", "ip", "link", "set", "lo", "up")
        return pa.pid, pb.pid

    def switch_ns(self, ip: str, prefix: int) -> int:
        """A namespace plugged straight into the switch by a veth pair (no macvlan): splits the
        cost of the simulated switch from that of macvlan."""
        p = self.spawn(["unshare", "-n", "sleep", "3600"])
        n = len(self.links)
        vs, vn = f"nsb{self.tag}s{n}", f"nsb{self.tag}t{n}"
        sh("ip", "link", "add", vs, "type", "veth", "peer", "name", vn)
        self.links.append(vs)
        sh("ip", "link", "set", vs, "master", self.net.bridge)
        sh("ip", "link", "set", vs, "up")
        sh("ip", "link", "set", vn, "netns", str(p.pid))
        sh("nsenter", "-t", str(p.pid), "-n", "ip", "addr", "add", f"{ip}/{prefix}", "dev", vn)
        sh("nsenter", "-t", str(p.pid), "-n", "ip", "link", "set", vn, "up")
        return p.pid

    def root_pair(self, ns_ip: str, root_ip: str, prefix: int) -> int:
        """A namespace joined to the root namespace by a veth pair (a client outside Docker)."""
        p = self.spawn(["unshare", "-n", "sleep", "3600"])
        vr, vn = f"nsb{self.tag}r", f"nsb{self.tag}n"
        sh("ip", "link", "add", vr, "type", "veth", "peer", "name", vn)
        self.links.append(vr)
        sh("ip", "addr", "add", f"{root_ip}/{prefix}", "dev", vr)
        sh("ip", "link", "set", vr, "up")
        sh("ip", "link", "set", vn, "netns", str(p.pid))
        sh("nsenter", "-t", str(p.pid), "-n", "ip", "addr", "add", f"{ns_ip}/{prefix}", "dev", vn)
        sh("nsenter", "-t", str(p.pid), "-n", "ip", "link", "set", vn, "up")
        sh("nsenter", "-t", str(p.pid), "-n", "ip", "route", "add", "default", "via", root_ip)
        return p.pid

    def spawn(self, argv: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        return p

    def echo_server(self, pid: int, port: int) -> int:
        """Start the echo server in ``pid``'s network namespace; returns the server's own pid
        (nsenter execs it, so it can be pinned with ``os.sched_setaffinity``)."""
        p = self.spawn(["nsenter", "-t", str(pid), "-n", PY, "-c", ECHO_SERVER, str(port)])
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p.pid

    def round_trips(self, pid: int, ip: str, port: int, n: int, cpus: str = "") -> tuple[list[int], int]:
        """``n`` round trips from ``pid``'s network namespace, the client pinned to ``cpus``
        ("0", "0,1"; empty: not pinned). Returns the round-trip times in ns and how many of them
        found the server on the client's CPU."""
        out = json.loads(sh("timeout", "300", "nsenter", "-t", str(pid), "-n", PY, "-c", ECHO_CLIENT,
                            ip, str(port), str(n), cpus))
        return out["ns"], out["same_cpu"]

    def close(self) -> None:
        for p in self.procs:  # only what this lab started, by PID
            p.kill()
            p.wait()
        ids = sh("docker", "ps", "-aq", "--filter", f"label=noops.bench={self.tag}", check=False).split()
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
        for link in self.links:
            sh("ip", "link", "del", link, check=False)
        simnet.down(self.net, self.hosts)
        infra.stop_pidfile(self.run_dir / "dockerd.pid", timeout=30)  # only if this lab started it
        shutil.rmtree(self.run_dir, ignore_errors=True)


def percentile(values: list, q: float) -> float:  # type: ignore[type-arg]
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(coro)
