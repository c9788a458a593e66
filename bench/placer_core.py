"""Benchmark (a): the placer's pure core alone.

100,000 instances of 1,000 apps (mixed sizes; some with UNIQUE, GROUP_BY, MAX_PER constraints)
onto 10,000 hosts, placed app by app against one scratch state, as the committer does.
Reports placements/s, peak memory, and the utilization bin-packing reaches against spread
(hosts used vs the lower bound from total demand).

    .venv/bin/python -m bench.placer_core [--hosts 10000] [--apps 1000] [--instances 100000]
        [--strategy binpack|spread|both] [--score-percent P] [--score-min-hosts N] [--score-max-hosts N]

The scale of issue 13: ``--hosts 100000 --apps 10000 --instances 1000000``.  The ``--score-*``
flags are NOOPS_PLACER_SCORE_* (services/placer/sampling.py); ``--score-percent 100
--score-max-hosts 0`` scores every host, as the placer did before sampling.
"""
from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np

from libs.constraints import parse
from services.placer import core
from services.placer.sampling import Sampling
from services.placer.snapshot import ClusterSnapshot, HostRow

SIZES = [(0.25, 256), (0.5, 512), (1.0, 1024), (2.0, 4096), (4.0, 8192)]


def make_hosts(n: int) -> ClusterSnapshot:
    return ClusterSnapshot([HostRow(f"h{k:05d}", 32.0, 131072.0,
                                    labels={"rack": f"r{k // 40}", "zone": f"z{k % 4}"}) for k in range(n)])


def make_apps(n_apps: int, n_instances: int, seed: int) -> list[core.AppView]:
    rng = np.random.default_rng(seed)
    # Mixed app sizes that add up to n_instances exactly.
    weights = rng.pareto(1.5, n_apps) + 1
    counts = np.maximum(1, np.floor(weights / weights.sum() * n_instances)).astype(int)
    counts[np.argmax(counts)] += n_instances - counts.sum()
    apps = []
    for k, count in enumerate(counts.tolist()):
        cpus, mem = SIZES[int(rng.integers(len(SIZES)))]
        cons: tuple = ()
        kind = k % 10
        if kind == 0:
            cons = (parse(["hostname", "UNIQUE"]),)
        elif kind == 1:
            cons = (parse(["rack", "GROUP_BY"]),)
        elif kind == 2:
            cons = (parse(["zone", "MAX_PER", str(max(1, count // 3 + 1))]),)
        apps.append(core.AppView(id=f"app{k}", version=1, instances=count, deleted=False, cpus=cpus, mem_mb=mem,
                                 constraints=cons))
    return apps


def run(n_hosts: int, n_apps: int, n_instances: int, strategy: str, sampling: Sampling = Sampling()) -> dict:
    snap = make_hosts(n_hosts)
    apps = [core.AppView(**{**a.__dict__, "strategy": strategy}) for a in make_apps(n_apps, n_instances, 7)]
    scratch = snap.scratch(sampling)
    t0 = time.perf_counter()
    placed = unplaced = 0
    for k, a in enumerate(apps):
        plan = core.decide(a, [], scratch, seed=k)
        placed += len(plan.place)
        unplaced += plan.unplaced
    dt = time.perf_counter() - t0
    demand_cpu = sum(a.cpus * a.instances for a in apps)
    demand_mem = sum(a.mem_mb * a.instances for a in apps)
    lower = max(math.ceil(demand_cpu / 32.0), math.ceil(demand_mem / 131072.0))
    used_hosts = int(((scratch.used["cpus"] > 0) | (scratch.used["mem"] > 0)).sum())
    return {"strategy": strategy, "placed": placed, "unplaced": unplaced, "seconds": round(dt, 3),
            "placements_per_s": round(placed / dt), "hosts_used": used_hosts, "lower_bound_hosts": lower,
            "cpu_util_of_used": round(demand_cpu / (used_hosts * 32.0), 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=10_000)
    p.add_argument("--apps", type=int, default=1_000)
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--strategy", choices=("binpack", "spread", "both"), default="both")
    d = Sampling()
    p.add_argument("--score-percent", type=float, default=d.percent)
    p.add_argument("--score-min-hosts", type=int, default=d.min_hosts)
    p.add_argument("--score-max-hosts", type=int, default=d.max_hosts)
    args = p.parse_args()
    sampling = Sampling(args.score_percent, args.score_min_hosts, args.score_max_hosts)
    for strategy in ("binpack", "spread") if args.strategy == "both" else (args.strategy,):
        print(run(args.hosts, args.apps, args.instances, strategy, sampling))
    print({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})


if __name__ == "__main__":
    main()
