"""Placement scores a sample of the hosts (services/placer/sampling.py): the cost of a decision
stops growing with the cluster, while constraints, spread, bin-packing quality and the exact
"why not" counts hold."""
import math
from collections import Counter
from dataclasses import fields

import numpy as np
import pytest

from libs.constraints import parse
from libs.settings import PlacerSettings
from services.placer.freeindex import FreeIndex
from services.placer.placement import Request, choose
from services.placer.sampling import EVERY_HOST, Sampling, window
from services.placer.snapshot import ClusterSnapshot, HostRow

SMALL = Sampling(min_hosts=20, max_hosts=20)   # forces sampling on a few hundred hosts


def cluster(n, racks=20, **kw):
    return ClusterSnapshot([HostRow(f"h{k:05d}", 8.0, 8192.0, labels={"rack": f"r{k % racks}", "zone": f"z{k % 4}"},
                                    **kw) for k in range(n)])


def req(count, *cons, **kw):
    base = dict(app="a", count=count, cpus=1.0, mem_mb=128.0, constraints=tuple(parse(c) for c in cons))
    return Request(**{**base, **kw})


@pytest.mark.parametrize("sampling,n,want", [
    pytest.param(Sampling(), 50, 50, id="small-cluster-whole"),
    pytest.param(Sampling(), 250, 120, id="adaptive-48pct"),
    pytest.param(Sampling(max_hosts=0), 1_000, 420, id="adaptive-42pct"),
    pytest.param(Sampling(max_hosts=0), 100_000, 5_000, id="adaptive-floor-5pct"),
    pytest.param(Sampling(), 100_000, Sampling().max_hosts, id="bounded"),
    pytest.param(Sampling(percent=10, max_hosts=0), 10_000, 1_000, id="fixed-percent"),
    pytest.param(Sampling(min_hosts=300, max_hosts=200), 10_000, 300, id="min-wins-over-max"),
    pytest.param(EVERY_HOST, 100_000, 100_000, id="every-host"),
])
def test_hosts_wanted(sampling, n, want):
    assert sampling.wanted(n) == want


def test_defaults_are_the_settings_defaults():
    d = {f.name: f.default for f in fields(PlacerSettings)}
    assert Sampling() == Sampling(d["score_percent"], d["score_min_hosts"], d["score_max_hosts"])


def test_window_wraps_and_never_repeats():
    order = np.arange(10)
    assert window(order, 7, 5).tolist() == [7, 8, 9, 0, 1]
    assert sorted(window(order, 7, 10).tolist()) == list(range(10))


def test_an_easy_decision_looks_at_a_bounded_number_of_hosts():
    snap = cluster(20_000)
    choice = choose(snap.scratch(Sampling(max_hosts=200)), req(10), seed=3)
    assert choice.placed == 10
    assert choice.visited == 200


def test_looks_further_when_the_sample_has_no_room():
    # 5 hosts of 600 have room: a sample of 20 rarely holds one, the decision must find them.
    snap = ClusterSnapshot([HostRow(f"h{k}", 4.0, 4096.0, used_cpus=0.0 if k % 120 == 7 else 4.0)
                            for k in range(600)])
    choice = choose(snap.scratch(SMALL), req(20), seed=1)
    assert choice.placed == 20 and len(set(choice.hosts.tolist())) == 5


def test_nothing_fits_counts_every_host_exactly():
    hosts = [HostRow(f"h{k}", 2.0 if k % 3 else 8.0, 8192.0, up=k % 7 != 0, cordoned=k % 11 == 0,
                     labels={"rack": f"r{k % 5}"}) for k in range(1_000)]
    snap = ClusterSnapshot(hosts)
    r = req(1, ["rack", "LIKE", "r[0-3]"], cpus=4.0, mem_mb=16384.0)
    sampled = choose(snap.scratch(SMALL), r, seed=9)
    whole = choose(snap.scratch(EVERY_HOST), r, seed=9)
    assert sampled.placed == 0 and sampled.visited == 1_000
    assert sampled.reasons == whole.reasons
    assert sum(sampled.reasons.values()) == 1_000
    assert set(sampled.reasons) == {"host down", "host cordoned", "rack not LIKE r[0-3]", "needs 4 cpus",
                                    "needs 16384 MiB memory"}


def test_partial_fit_reports_exact_counts():
    snap = ClusterSnapshot([HostRow(f"h{k}", 4.0, 4096.0, used_cpus=3.0 if k < 10 else 4.0) for k in range(500)])
    choice = choose(snap.scratch(SMALL), req(12), seed=2)
    assert choice.placed == 10
    assert choice.reasons == {"needs 1 cpus": 490}


@pytest.mark.parametrize("constraint,count,check", [
    pytest.param(["hostname", "UNIQUE"], 60, lambda hs, lb: len(set(hs)) == 60, id="unique-hostname"),
    pytest.param(["rack", "UNIQUE"], 20, lambda hs, lb: len({lb[h]["rack"] for h in hs}) == 20, id="unique-rack"),
    pytest.param(["rack", "GROUP_BY"], 100, lambda hs, lb: set(Counter(lb[h]["rack"] for h in hs).values()) == {5},
                 id="group-by-rack"),
    pytest.param(["zone", "MAX_PER", "3"], 12, lambda hs, lb: max(Counter(lb[h]["zone"] for h in hs).values()) <= 3,
                 id="max-per-zone"),
    pytest.param(["rack", "CLUSTER", "r7"], 30, lambda hs, lb: {lb[h]["rack"] for h in hs} == {"r7"},
                 id="cluster-value"),
    pytest.param(["rack", "CLUSTER"], 30, lambda hs, lb: len({lb[h]["rack"] for h in hs}) == 1, id="cluster-no-value"),
    pytest.param(["rack", "LIKE", "r1[0-9]"], 40, lambda hs, lb: all(lb[h]["rack"] >= "r10" for h in hs), id="like"),
    pytest.param(["rack", "UNLIKE", "r[0-9]"], 40, lambda hs, lb: all(len(lb[h]["rack"]) == 3 for h in hs),
                 id="unlike"),
])
def test_constraints_hold_when_sampling(constraint, count, check):
    snap = cluster(800)
    labels = {f"h{k:05d}": {"rack": f"r{k % 20}", "zone": f"z{k % 4}"} for k in range(800)}
    choice = choose(snap.scratch(SMALL), req(count, constraint), seed=5)
    got = [snap.ids[h] for h in choice.hosts.tolist()]
    assert len(got) == count, choice.reasons
    assert check(got, labels)
    assert choice.visited < 800, "an easy request is decided on a sample"


def test_unique_counts_existing_instances_outside_the_sample():
    snap = cluster(400)
    existing = tuple(range(0, 400, 2))          # every other host already runs one
    choice = choose(snap.scratch(SMALL), req(150, ["hostname", "UNIQUE"], existing=existing), seed=4)
    assert choice.placed == 150 and all(h % 2 == 1 for h in choice.hosts.tolist())


def test_spread_still_spreads():
    snap = cluster(2_000)
    choice = choose(snap.scratch(SMALL), req(300, strategy="spread"), seed=1)
    assert len(set(choice.hosts.tolist())) == 300


def test_spread_prefers_the_least_used_hosts_of_its_sample():
    used = [HostRow(f"h{k}", 8.0, 8192.0, used_cpus=0.0 if k % 2 else 6.0) for k in range(1_000)]
    choice = choose(ClusterSnapshot(used).scratch(SMALL), req(10, strategy="spread"), seed=1)
    assert all(h % 2 for h in choice.hosts.tolist())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_seed_same_plan_and_seeds_differ(seed):
    snap = cluster(3_000)
    a = choose(snap.scratch(SMALL), req(25, strategy="spread"), seed=seed).hosts
    b = choose(snap.scratch(SMALL), req(25, strategy="spread"), seed=seed).hosts
    c = choose(snap.scratch(SMALL), req(25, strategy="spread"), seed=seed + 100).hosts
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def pack(sampling):
    """Mid-size: 2,000 hosts of 32 cpus / 128 GiB, 300 apps of mixed sizes (every 10th UNIQUE
    hostname), 20,000 instances, placed app by app as the committer does.  -> (hosts used, lower bound)"""
    rng = np.random.default_rng(7)
    snap = ClusterSnapshot([HostRow(f"h{k:04d}", 32.0, 131072.0, labels={"rack": f"r{k // 40}"})
                            for k in range(2_000)])
    scratch = snap.scratch(sampling)
    sizes = [(0.25, 256), (0.5, 512), (1.0, 1024), (2.0, 4096), (4.0, 8192)]
    counts = np.maximum(1, np.floor((w := rng.pareto(1.5, 300) + 1) / w.sum() * 20_000)).astype(int)
    cpu = mem = 0.0
    for k, count in enumerate(counts.tolist()):
        cpus, mb = sizes[int(rng.integers(len(sizes)))]
        cons = (parse(["hostname", "UNIQUE"]),) if k % 10 == 0 else ()
        got = choose(scratch, Request(app=f"a{k}", count=count, cpus=cpus, mem_mb=mb, constraints=cons), seed=k)
        assert got.placed == count
        cpu, mem = cpu + cpus * count, mem + mb * count
    return int((scratch.used["cpus"] > 0).sum()), max(math.ceil(cpu / 32.0), math.ceil(mem / 131072.0))


@pytest.mark.parametrize("max_hosts", [20, 100])
def test_binpack_on_a_sample_packs_as_tight_as_on_every_host(max_hosts):
    used, lower = pack(Sampling(max_hosts=max_hosts))
    every, _ = pack(EVERY_HOST)
    assert used <= math.ceil(lower * 1.02), (used, lower)
    assert used <= math.ceil(every * 1.002), (used, every)


def test_free_index_tightest_fits_first_and_follows_reservations():
    free = np.array([8.0, 1.0, 3.0, 0.5, 2.0, 6.0])
    index = FreeIndex(free, eligible=np.array([True, True, True, True, True, False]), order=np.arange(6))
    assert index.fitting(2.0, 2).tolist() == [4, 2]          # 0.5 and 1 are too small, 6 not schedulable
    assert index.fitting(0.0, 10).tolist() == [3, 1, 4, 2, 0]
    index.update([0], [2.5])                                  # host 0 took 5.5
    assert index.fitting(2.0, 2).tolist() == [4, 0]


def test_binpack_sample_sees_hosts_filled_by_earlier_decisions():
    snap = cluster(5_000)
    scratch = snap.scratch(SMALL)
    first = choose(scratch, req(4), seed=1)                   # opens one host, half full
    second = choose(scratch, req(4), seed=2)
    assert set(second.hosts.tolist()) == set(first.hosts.tolist())


def test_binpack_opens_empty_hosts_at_random_not_rack_after_rack():
    # Racks of 40 consecutive hosts: opening hosts in index order would fill racks r0..r9 only.
    snap = ClusterSnapshot([HostRow(f"h{k:04d}", 8.0, 8192.0, labels={"rack": f"r{k // 40}"}) for k in range(2_000)])
    choice = choose(snap.scratch(Sampling(max_hosts=100)), req(400, cpus=8.0), seed=1)
    racks = {k // 40 for k in choice.hosts.tolist()}
    assert choice.placed == 400 and len(racks) >= 40
