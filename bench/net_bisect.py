"""Bisect: where the simulated switch's round trips go, from the reference setup of
../shared/BASELINES.md to noops's own (devtools/simnet.py).  Everything is built here with `ip`
in named namespaces (``nlb-*``) and links (``nlb*``) in 198.19.240.0/21, and removed on exit.

    .venv/bin/python -m bench.net_bisect [--trips 10000] [--reps 20]

Variants, each a Linux bridge with two veth "NICs" (macvlan bridge mode on each, moved into a
namespace of its own) and two veth ports with a namespace behind each (the switch without macvlan):

- ``ref``: the bridge in a namespace of its own, link defaults (the reference setup);
- ``ref+txoff``: the same with ``ethtool -K tx off`` on every veth (what simnet does for DHCP);
- ``ref+txoff+nf``: the same plus a FORWARD chain in the switch's namespace shaped like dockerd's
  (policy DROP, a jump to a user chain whose rule ACCEPTs bridge-to-bridge): bridge netfilter
  then walks it for every bridged frame, as in the root namespace once dockerd has started;
- ``root+txoff``: bridge and NICs in the root namespace with tx off: devtools/simnet.py's layout.

Plus one veth pair between two namespaces, and the same cable with macvlan (``cable``,
``cable+txoff``): two host namespaces joined by that one veth pair, each container a macvlan
(bridge mode) on its host's end, no switch.  That is the issue's comparison in its strictest
form, the physical baseline's own wire with and without macvlan.  Placements as in bench.net_latency: ``one cpu``
(client and server on CPU 0) and ``two cpus`` (client on 0, server on 1), interleaved.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from bench.net_setup import ECHO_CLIENT, ECHO_SERVER, percentile, sh

PY = sys.executable
PORT = 7009
PLACEMENTS = {"one cpu": ("0", {0}), "two cpus": ("0", {1})}
VARIANTS = {  # name: (third octet, bridge in the root namespace, tx off, docker-like FORWARD)
    "ref": (241, False, False, False),
    "ref+txoff": (242, False, True, False),
    "ref+txoff+nf": (243, False, True, True),
    "root+txoff": (244, True, True, False),
}


def ip(*args: str) -> None:
    sh("ip", *args)


def in_ns(ns: str | None, *argv: str) -> None:
    sh(*(["ip", "netns", "exec", ns] if ns else []), *argv)


class Bisect:
    """Builds the variants; ``close()`` removes every namespace, link and rule it made."""

    def __init__(self) -> None:
        self.netns: list[str] = []
        self.links: list[str] = []
        self.rules: list[list[str]] = []
        self.procs: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def ns(self, name: str) -> str:
        ip("netns", "add", name)
        self.netns.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def addr(self, ns: str, dev: str, cidr: str) -> None:
        ip("-n", ns, "addr", "add", cidr, "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")

    def pair(self) -> tuple[str, str]:
        a, b = self.ns("nlb-pa"), self.ns("nlb-pb")
        ip("link", "add", "nlbva", "netns", a, "type", "veth", "peer", "name", "nlbvb", "netns", b)
        self.addr(a, "nlbva", "198.19.240.1/24")
        self.addr(b, "nlbvb", "198.19.240.2/24")
        return a, b

    def variant(self, k: int, octet: int, root: bool, txoff: bool, nf: bool) -> dict[str, tuple[str, str, str]]:
        """Returns {"macvlan": (client ns, server ns, server ip), "switch": (...)}."""
        sw = None if root else self.ns(f"nlb-{k}sw")
        opt = ["-n", sw] if sw else []
        br = f"nlb{k}br"
        ip(*opt, "link", "add", br, "type", "bridge", "forward_delay", "0")
        if root:
            self.links.append(br)
        ip(*opt, "link", "set", br, "up")
        out: dict[str, list[str]] = {"macvlan": [], "switch": []}
        for i in (1, 2):
            host = f"nlb-{k}h{i}"  # the NIC's namespace (root's in the simnet layout)
            nic, port = f"nlb{k}n{i}", f"nlb{k}p{i}"
            nic_ns = None if root else self.ns(host)
            ip("link", "add", nic, *(["netns", nic_ns] if nic_ns else []), "type", "veth",
               "peer", "name", port, *(["netns", sw] if sw else []))
            if root:
                self.links.append(nic)
            ip(*opt, "link", "set", port, "master", br)
            for ns, dev in ((nic_ns, nic), (sw, port)):
                if txoff:
                    in_ns(ns, "ethtool", "-K", dev, "tx", "off")
                ip(*(["-n", ns] if ns else []), "link", "set", dev, "up")
            c = self.ns(f"nlb-{k}c{i}")
            mv = f"nlb{k}m{i}"
            ip(*(["-n", nic_ns] if nic_ns else []), "link", "add", "link", nic, "name", mv,
               "type", "macvlan", "mode", "bridge")
            ip(*(["-n", nic_ns] if nic_ns else []), "link", "set", mv, "netns", c)
            self.addr(c, mv, f"198.19.{octet}.{i}/24")
            s = self.ns(f"nlb-{k}s{i}")
            q = f"nlb{k}q{i}"
            ip(*opt, "link", "add", q, "type", "veth", "peer", "name", "eth0", "netns", s)
            if root:
                self.links.append(q)
            ip(*opt, "link", "set", q, "master", br)
            if txoff:
                in_ns(sw, "ethtool", "-K", q, "tx", "off")
                in_ns(s, "ethtool", "-K", "eth0", "tx", "off")
            ip(*opt, "link", "set", q, "up")
            self.addr(s, "eth0", f"198.19.{octet}.{10 + i}/24")
            out["macvlan"].append(c)
            out["switch"].append(s)
        if nf:
            in_ns(sw, "iptables", "-N", "NLB-USER")
            in_ns(sw, "iptables", "-A", "NLB-USER", "-i", br, "-o", br, "-j", "ACCEPT")
            in_ns(sw, "iptables", "-A", "FORWARD", "-j", "NLB-USER")
            in_ns(sw, "iptables", "-P", "FORWARD", "DROP")
        if root:  # like simnet.allow_switch: dockerd's FORWARD DROP is in the way
            rule = ["DOCKER-USER", "-i", br, "-o", br, "-j", "ACCEPT"]
            if subprocess.run(["iptables", "-I", *rule], capture_output=True).returncode == 0:
                self.rules.append(rule)
        return {"macvlan": (out["macvlan"][0], out["macvlan"][1], f"198.19.{octet}.2"),
                "switch": (out["switch"][0], out["switch"][1], f"198.19.{octet}.12")}

    def cable(self, k: int, octet: int, txoff: bool) -> tuple[str, str, str]:
        """Two hosts on one veth "cable", a macvlan container on each end: (client, server, ip)."""
        hosts = [self.ns(f"nlb-{k}h{i}") for i in (1, 2)]
        nics = [f"nlb{k}n{i}" for i in (1, 2)]
        ip("link", "add", nics[0], "netns", hosts[0], "type", "veth", "peer", "name", nics[1], "netns", hosts[1])
        cs = []
        for i, (host, nic) in enumerate(zip(hosts, nics), start=1):
            if txoff:
                in_ns(host, "ethtool", "-K", nic, "tx", "off")
            ip("-n", host, "link", "set", nic, "up")
            c = self.ns(f"nlb-{k}c{i}")
            mv = f"nlb{k}m{i}"
            ip("-n", host, "link", "add", "link", nic, "name", mv, "type", "macvlan", "mode", "bridge")
            ip("-n", host, "link", "set", mv, "netns", c)
            self.addr(c, mv, f"198.19.{octet}.{i}/24")
            cs.append(c)
        return cs[0], cs[1], f"198.19.{octet}.2"

    def server(self, ns: str) -> int:
        p = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", ECHO_SERVER, str(PORT)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p.pid  # `ip netns exec` execs the program

    def close(self) -> None:
        for p in self.procs:  # only what this run started, by PID
            p.kill()
            p.wait()
        for rule in self.rules:
            subprocess.run(["iptables", "-D", *rule], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.netns:  # takes the links inside along
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def round_trips(ns: str, ip_: str, n: int, cpus: str) -> list[int]:
    out = sh("timeout", "300", "ip", "netns", "exec", ns, PY, "-c", ECHO_CLIENT, ip_, str(PORT), str(n), cpus)
    return json.loads(out)["ns"]


def main(trips: int, reps: int) -> None:
    lab = Bisect()
    try:
        a, b = lab.pair()
        paths = {"veth pair": (a, b, "198.19.240.2"),
                 "cable macvlan": lab.cable(8, 245, False), "cable+txoff macvlan": lab.cable(9, 246, True)}
        for k, (name, spec) in enumerate(VARIANTS.items()):
            for kind, path in lab.variant(k, *spec).items():
                paths[f"{name} {kind}"] = path
        servers = {name: lab.server(srv) for name, (_, srv, _) in paths.items()}
        per_rep = max(1, trips // reps)
        samples: dict[tuple[str, str], list[int]] = {(p, n): [] for p in PLACEMENTS for n in paths}
        loads = [os.getloadavg()[0]]
        for _ in range(reps):
            for place, (cli_cpus, srv_cpus) in PLACEMENTS.items():
                for name, (cli, _, ip_) in paths.items():
                    os.sched_setaffinity(servers[name], srv_cpus)
                    samples[(place, name)] += round_trips(cli, ip_, per_rep, cli_cpus)
            loads.append(os.getloadavg()[0])
        print(f"# load average (1 min): {min(loads):.2f} .. {max(loads):.2f}, {per_rep} x {reps} round trips")
        for place in PLACEMENTS:
            pair = percentile(samples[(place, "veth pair")], 0.5)
            for name in paths:
                ns = samples[(place, name)]
                med = percentile(ns, 0.5)
                print(f"{place:8} {name:22} median {med / 1000:6.1f} µs  p99 {percentile(ns, 0.99) / 1000:7.1f} µs"
                      f"  {(med / pair - 1) * 100:+6.1f}% vs veth pair")
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trips", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
    main(args.trips, args.reps)
