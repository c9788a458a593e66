"""Benchmark: TCP request/response latency, 64-byte messages, between two instances on
different simulated hosts over macvlan, against plain veth-connected namespaces (the physical
baseline) and Docker's NAT with a published port.

    .venv/bin/python -m bench.net_latency [--trips 20000] [--reps 40]

Paths (the echo server and client are the same Python programs on every path, run inside the
namespaces under test, the containers' own for macvlan and NAT):

- ``veth pair``: two namespaces, one veth pair, nothing else;
- ``switch, no macvlan``: two namespaces plugged into the simulated switch by veth ports, i.e.
  two "hosts" on one switch: the physical baseline for the simulated network, and the one the
  goal is judged against (the macvlan path crosses the same switch);
- ``macvlan (noops)``: two containers on two simulated hosts, attached by hostd's network step;
- ``docker NAT -p``: a container on Docker's bridge with a published port, reached from a
  namespace outside Docker (DNAT in PREROUTING, no proxy).

CPU placement decides these figures on a small VM more than the network path does: a round
trip whose two ends sit on different CPUs pays two cross-CPU wake-ups (on the 2-vCPU Firecracker
VM of bench/RESULTS.md ~70 µs more per round trip than on one CPU, whatever the path), and which
paths the scheduler spreads over the CPUs changes from run to run and with the machine's load.
So every path is measured in three placements, interleaved (for each repetition: each placement,
each path): ``one cpu`` (client and server pinned to CPU 0), ``two cpus`` (client on 0, server on
1) and ``free`` (both may use all CPUs; the share of round trips that found both ends on one CPU
is printed). Median and p99 over all round trips of a path and placement, in µs.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

from bench.net_setup import Lab, percentile, run

PORT = 7007
BASELINE = "switch, no macvlan"
# placement name -> (client cpus, server cpus)
PLACEMENTS = {"one cpu": ("0", {0}), "two cpus": ("0", {1}), "free": ("", None)}


async def main(trips: int, reps: int) -> dict[tuple[str, str], tuple[float, float, float]]:
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
        servers = {"macvlan (noops)": lab.echo_server(srv, PORT)}
        # one veth pair, nothing else.
        base_srv, base_cli = lab.netns_pair("198.19.253.1", "198.19.253.2", 30)
        servers["veth pair"] = lab.echo_server(base_srv, PORT)
        # The same switch without macvlan: two namespaces plugged into it by veth (pool half of the /20).
        sw_ip = [str(lab.net.pool_range[0] + k) for k in (100, 101)]
        sw_srv, sw_cli = lab.switch_ns(sw_ip[0], 20), lab.switch_ns(sw_ip[1], 20)
        servers[BASELINE] = lab.echo_server(sw_srv, PORT)
        # Docker NAT: a container on Docker's bridge with a published port, reached from a
        # namespace outside Docker through the host's address (DNAT in PREROUTING, no proxy).
        _, nat_srv = lab.container("-p", f"{PORT + 1}:{PORT}")
        servers["docker NAT -p"] = lab.echo_server(nat_srv, PORT)
        nat_cli = lab.root_pair("198.19.254.2", "198.19.254.1", 30)

        paths = {"veth pair": (base_cli, "198.19.253.1", PORT),
                 BASELINE: (sw_cli, sw_ip[0], PORT),
                 "macvlan (noops)": (cli, srv_ip, PORT),
                 "docker NAT -p": (nat_cli, "198.19.254.1", PORT + 1)}
        all_cpus = os.sched_getaffinity(0)
        per_rep = max(1, trips // reps)
        samples: dict[tuple[str, str], list[int]] = {(p, n): [] for p in PLACEMENTS for n in paths}
        same: dict[tuple[str, str], int] = {k: 0 for k in samples}
        loads = [os.getloadavg()[0]]
        for _ in range(reps):
            for place, (cli_cpus, srv_cpus) in PLACEMENTS.items():
                for name, (pid, ip, port) in paths.items():
                    os.sched_setaffinity(servers[name], srv_cpus or all_cpus)
                    ns, n_same = lab.round_trips(pid, ip, port, per_rep, cli_cpus)
                    samples[(place, name)] += ns
                    same[(place, name)] += n_same
            loads.append(os.getloadavg()[0])
        print(f"# load average (1 min) during the run: {min(loads):.2f} .. {max(loads):.2f}, "
              f"{per_rep} round trips x {reps} repetitions per path and placement")
        out = {}
        for place in PLACEMENTS:
            base = percentile(samples[(place, BASELINE)], 0.5)
            pair = percentile(samples[(place, "veth pair")], 0.5)
            for name in paths:
                ns = samples[(place, name)]
                med, p99 = percentile(ns, 0.5) / 1000, percentile(ns, 0.99) / 1000
                share = same[(place, name)] / len(ns)
                out[(place, name)] = (med, p99, share)
                print(f"{place:8} {name:19} n={len(ns):6}  median {med:7.1f} µs  p99 {p99:7.1f} µs  "
                      f"one-cpu trips {share:4.0%}  {(med * 1000 / base - 1) * 100:+6.1f}% vs switch  "
                      f"{(med * 1000 / pair - 1) * 100:+6.1f}% vs veth pair")
        return out
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trips", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
    run(main(args.trips, args.reps))
