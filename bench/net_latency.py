"""Benchmark: TCP request/response latency, 64-byte messages, between two instances on
different simulated hosts over macvlan, against two plain veth-connected namespaces (the
physical baseline) and Docker's NAT with a published port.  Repetitions are interleaved
(A B C A B C ...) because single runs on a small VM drift by ±20-30%.

    .venv/bin/python -m bench.net_latency [--trips 20000] [--reps 5]

Prints one line per path: median and p99 in µs over all round trips, and the ratio to the
baseline.  The echo server and client are the same Python programs on every path, run inside
the namespaces under test (the containers' own namespaces for macvlan and NAT).
"""
from __future__ import annotations

import argparse
import platform
import time

from bench.net_setup import Lab, percentile, run

PORT = 7007


async def main(trips: int, reps: int) -> dict[str, tuple[float, float]]:
    lab = Lab()
    try:
        lab.up()
        # macvlan: two busybox containers, one per simulated host, addressed by hostd's DHCP step.
        for h in ("b1", "b2"):
            lab.add_host(h)
        _, srv = lab.container("--network", "none")
        _, cli = lab.container("--network", "none")
        srv_ip = await lab.attach("b1", "bench-srv", srv)
        await lab.attach("b2", "bench-cli", cli)
        lab.echo_server(srv, PORT)
        # baseline: two namespaces and one veth pair, nothing else.
        base_srv, base_cli = lab.netns_pair("198.19.253.1", "198.19.253.2", 30)
        lab.echo_server(base_srv, PORT)
        # Docker NAT: a container on Docker's bridge with a published port, reached from a
        # namespace outside Docker through the host's address (DNAT in PREROUTING, no proxy).
        _, nat_srv = lab.container("-p", f"{PORT + 1}:{PORT}")
        lab.echo_server(nat_srv, PORT)
        nat_cli = lab.root_pair("198.19.254.2", "198.19.254.1", 30)

        # The same switch without macvlan: two namespaces plugged into it by veth (pool half of the /20).
        sw_ip = [str(lab.net.pool_range[0] + k) for k in (100, 101)]
        sw_srv, sw_cli = lab.switch_ns(sw_ip[0], 20), lab.switch_ns(sw_ip[1], 20)
        lab.echo_server(sw_srv, PORT)

        paths = {"veth (baseline)": (base_cli, "198.19.253.1", PORT),
                 "macvlan (noops)": (cli, srv_ip, PORT),
                 "switch, no macvlan": (sw_cli, sw_ip[0], PORT),
                 "docker NAT -p": (nat_cli, "198.19.254.1", PORT + 1)}
        per_rep = max(1, trips // reps)
        samples: dict[str, list[int]] = {k: [] for k in paths}
        for _ in range(reps):
            for name, (pid, ip, port) in paths.items():
                samples[name] += lab.round_trips(pid, ip, port, per_rep)
        base = percentile(samples["veth (baseline)"], 0.5)
        out = {}
        for name, ns in samples.items():
            med, p99 = percentile(ns, 0.5) / 1000, percentile(ns, 0.99) / 1000
            out[name] = (med, p99)
            print(f"{name:19} n={len(ns):6}  median {med:7.1f} µs  p99 {p99:7.1f} µs  "
                  f"({(percentile(ns, 0.5) / base - 1) * 100:+.1f}% vs baseline)")
        return out
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trips", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
    run(main(args.trips, args.reps))
