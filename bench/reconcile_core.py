"""Benchmark: one full comparison of the reconciler's pure core (services/reconciler/plan.py).

100,000 instances of 1,000 apps on 10,000 hosts (hollow: the inputs are built in memory, as the
views would deliver them), every instance in service behind HAProxy and nftables, 1% drift
injected: missing containers, orphans, leaked volumes and leases, sink entries added and removed.
Two rounds are computed (the second acts: the first only starts the grace), timed without and
then measured with tracemalloc (peak of the core's own allocations, inputs excluded).

    .venv/bin/python -m bench.reconcile_core [--hosts 10000] [--instances 100000] [--drift 0.01]
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import time
import tracemalloc

from libs.messages import Inventory, InventoryItem, SinkView
from services.reconciler.plan import Desired, Endpoint, Instance, Observed, Policy, compute


def build(n_hosts: int, n_instances: int, n_apps: int, drift: float, seed: int = 7):
    rnd = random.Random(seed)
    hosts = [f"hh{k:05d}" for k in range(n_hosts)]
    insts: dict[str, Instance] = {}
    items: dict[str, list[InventoryItem]] = {h: [] for h in hosts}
    in_service: dict[str, list[Endpoint]] = {}
    lb: dict[int, tuple[str, str]] = {}
    ports = {"http": 8080}
    for k in range(n_instances):
        app, host = f"app{k % n_apps:04d}", hosts[k % n_hosts]
        iid, cid, ip = f"{app}-{k:012x}", f"{k:064x}", f"198.{18 + (k >> 16) % 2}.{(k >> 8) % 256}.{k % 256}"
        insts[iid] = Instance(iid, app, host, "RUNNING", 1, cid)
        items[host].append(InventoryItem(instance=iid, app=app, container_id=cid, state="running", ip=ip, epoch=1))
        in_service.setdefault(app, []).append(Endpoint(iid, ip, ports))
    for a in range(n_apps):
        lb[20000 + a] = (f"app{a:04d}", "http")
    n_drift = int(n_instances * drift)
    volumes: dict[str, list[str]] = {h: [] for h in hosts}
    for k in rnd.sample(range(n_instances), n_drift):   # containers gone behind hostd's back
        host = hosts[k % n_hosts]
        items[host] = [i for i in items[host] if not i.instance.endswith(f"-{k:012x}")]
    for j in range(n_drift):                              # orphans, and leaks of ended instances
        host = hosts[rnd.randrange(n_hosts)]
        items[host].append(InventoryItem(instance=f"ghost-{j:012x}", app="ghost", container_id=f"g{j:063x}",
                                         state="running", epoch=1))
        volumes[hosts[rnd.randrange(n_hosts)]].append(f"gone-{j:012x}")
    invs = {h: Inventory(host=h, items=items[h], volumes=volumes[h], leases=volumes[h]) for h in hosts}
    haproxy: dict[str, list[str]] = {}
    nft: dict[str, list[str]] = {}
    for port, (app, _) in lb.items():
        eps = in_service[app]
        haproxy[str(port)] = [f"{e.instance} {e.ip}:8080" for e in eps]
        nft[app] = [e.ip for e in eps]
    for j in range(n_drift):                              # sink entries added and removed by hand
        port = 20000 + rnd.randrange(n_apps)
        if j % 2:
            haproxy[str(port)].append(f"x{j} 198.19.255.{j % 250}:80")
        else:
            nft[lb[port][0]].pop()
    sinks = (SinkView(sink="haproxy", ok=True, groups=haproxy), SinkView(sink="nft", ok=True, groups=nft))
    desired = Desired(insts, {a: tuple(v) for a, v in in_service.items()}, lb)
    return desired, Observed(invs, sinks)


def peak_rss_mib() -> float:
    """The whole process (inputs included), from /proc/self/status VmHWM."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scale_args() -> argparse.Namespace:
    """The benchmarks' common scale: hosts, instances, apps, drift (shared with reconcile_round)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10_000)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--apps", type=int, default=1_000)
    ap.add_argument("--drift", type=float, default=0.01)
    return ap.parse_args()


def two_rounds(desired: Desired, observed: Observed, policy: Policy):
    first = compute(desired, observed, {}, 1000.0, policy)
    return first, compute(desired, observed, first.memory, 1000.0 + policy.grace_s, policy)


def main() -> None:
    args = scale_args()
    t0 = time.perf_counter()
    desired, observed = build(args.hosts, args.instances, args.apps, args.drift)
    built_s = time.perf_counter() - t0
    policy = Policy(grace_s=10.0, max_actions=10_000)
    gc.collect()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        first, second = two_rounds(desired, observed, policy)
        times.append((time.perf_counter() - t0) / 2)
    tracemalloc.start()
    compute(desired, observed, first.memory, 1010.0, policy)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    a = second.actions
    print(json.dumps({
        "hosts": args.hosts, "instances": args.instances, "apps": args.apps, "drift": args.drift,
        "inputs_built_s": round(built_s, 2),
        "round_s_best": round(min(times), 3), "round_s_median": round(sorted(times)[1], 3),
        "core_peak_mib": round(peak / 2**20, 1),
        "process_peak_rss_mib": round(peak_rss_mib(), 1),
        "findings": len(second.findings), "counts": {k: v for k, v in second.counts.items() if v},
        "actions": {"lose": len(a.lose), "sweep": sum(len(v) for v in a.sweeps.values()),
                    "repair_apps": sum(len(v) for v in a.repairs.values())},
    }, indent=1))


if __name__ == "__main__":
    main()
