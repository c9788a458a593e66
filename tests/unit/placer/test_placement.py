from collections import Counter

import numpy as np
import pytest

from libs.constraints import parse
from services.placer.placement import Request, choose
from services.placer.snapshot import ClusterSnapshot, HostRow


def cluster(n=6, racks=3, **kw):
    return ClusterSnapshot([HostRow(f"h{k}", 4.0, 4096.0, labels={"rack": f"r{k % racks}", "zone": f"z{k % 2}"},
                                    **kw) for k in range(n)])


def req(count, *cons, **kw):
    base = dict(app="a", count=count, cpus=1.0, mem_mb=128.0, constraints=tuple(parse(c) for c in cons))
    return Request(**{**base, **kw})


def hosts_of(snap, choice):
    return [snap.ids[h] for h in choice.hosts.tolist()]


def test_binpack_fills_one_host_before_the_next():
    snap = cluster()
    got = hosts_of(snap, choose(snap.scratch(), req(6), seed=1))
    assert sorted(Counter(got).values()) == [2, 4]


def test_binpack_prefers_the_most_used_host():
    snap = ClusterSnapshot([HostRow("a", 4, 4096), HostRow("b", 4, 4096, used_cpus=2, used_mem_mb=1024)])
    assert hosts_of(snap, choose(snap.scratch(), req(2), seed=3)) == ["b", "b"]


def test_spread_one_per_host():
    snap = cluster()
    got = hosts_of(snap, choose(snap.scratch(), req(6, strategy="spread"), seed=1))
    assert sorted(got) == sorted(snap.ids)


@pytest.mark.parametrize("constraint,count,check", [
    pytest.param(["hostname", "UNIQUE"], 6, lambda hs, s: len(set(hs)) == 6, id="unique-hostname"),
    pytest.param(["rack", "UNIQUE"], 3, lambda hs, s: len({s[h] for h in hs}) == 3, id="unique-rack"),
    pytest.param(["rack", "GROUP_BY"], 6, lambda hs, s: sorted(Counter(s[h] for h in hs).values()) == [2, 2, 2],
                 id="group-by-rack"),
    pytest.param(["zone", "MAX_PER", "2"], 4, lambda hs, s: max(Counter(s[h] for h in hs).values()) <= 2,
                 id="max-per-zone"),
    pytest.param(["rack", "CLUSTER", "r1"], 3, lambda hs, s: {s[h] for h in hs} == {"r1"}, id="cluster-value"),
    pytest.param(["rack", "CLUSTER"], 5, lambda hs, s: len({s[h] for h in hs}) == 1, id="cluster-no-value"),
    pytest.param(["hostname", "LIKE", "h[12]"], 4, lambda hs, s: set(hs) <= {"h1", "h2"}, id="like"),
    pytest.param(["hostname", "UNLIKE", "h[0-4]"], 4, lambda hs, s: set(hs) == {"h5"}, id="unlike"),
])
def test_constraints(constraint, count, check):
    snap = cluster()
    rack = {h: lb for h, lb in zip(snap.ids, [f"r{k % 3}" if constraint[0] == "rack" else f"z{k % 2}"
                                             for k in range(6)])}
    choice = choose(snap.scratch(), req(count, constraint), seed=5)
    got = hosts_of(snap, choice)
    assert len(got) == count, choice.reasons
    assert check(got, rack)


def test_unique_counts_existing_instances():
    snap = cluster()
    existing = tuple(range(5))
    choice = choose(snap.scratch(), req(2, ["hostname", "UNIQUE"], existing=existing), seed=1)
    assert hosts_of(snap, choice) == ["h5"]
    assert choice.reasons == {"UNIQUE hostname: value taken": 5}


@pytest.mark.parametrize("kw,hosts,reason", [
    pytest.param(dict(cpus=8.0), dict(), "needs 8 cpus", id="cpus"),
    pytest.param(dict(mem_mb=8192.0), dict(), "needs 8192 MiB memory", id="memory"),
    pytest.param(dict(disk_mb=100.0), dict(disk_mb=50.0), "needs 100 MiB disk", id="disk"),
    pytest.param(dict(egress_mbit=100.0), dict(egress_mbit=10.0), "needs 100 Mbit/s egress", id="egress"),
    pytest.param(dict(), dict(addresses=0.0), "no free container address", id="addresses"),
    pytest.param(dict(), dict(up=False), "host down", id="down"),
    pytest.param(dict(), dict(draining=True), "host draining", id="draining"),
    pytest.param(dict(), dict(cordoned=True), "host cordoned", id="cordoned"),
])
def test_every_no_is_named(kw, hosts, reason):
    snap = cluster(**hosts)
    choice = choose(snap.scratch(), req(1, **kw), seed=1)
    assert choice.placed == 0
    assert choice.reasons == {reason: 6}


def test_reserves_so_a_second_request_sees_the_first():
    snap = ClusterSnapshot([HostRow("a", 2, 4096)])
    s = snap.scratch()
    assert choose(s, req(2), seed=1).placed == 2
    second = choose(s, req(1), seed=1)
    assert second.placed == 0 and second.reasons == {"needs 1 cpus": 1}
    assert snap.used["cpus"][0] == 0, "the snapshot itself is untouched"


def test_seed_decides_ties_reproducibly():
    snap = cluster(n=50, racks=5)
    a = choose(snap.scratch(), req(3, strategy="spread"), seed=11).hosts
    b = choose(snap.scratch(), req(3, strategy="spread"), seed=11).hosts
    assert np.array_equal(a, b)


def test_host_port_one_instance_per_host_and_not_where_something_listens():
    snap = ClusterSnapshot([HostRow(f"h{k}", 8.0, 8192.0, ports_taken=frozenset({8080} if k == 1 else {22}))
                            for k in range(4)])
    scratch = snap.scratch()
    first = choose(scratch, req(5, host_ports=(8080,)), seed=1)
    assert sorted(hosts_of(snap, first)) == ["h0", "h2", "h3"]      # binpack would stack them, but no
    assert first.reasons == {"host port 8080 in use": 1}
    # The plan's own reservations count: a second request for the port finds every host taken.
    second = choose(scratch, req(1, host_ports=(8080, 9090)), seed=1)
    assert second.placed == 0 and second.reasons == {"host port 8080 in use": 4}
    # Another port is still free on all four.
    assert choose(scratch, req(4, host_ports=(9090,)), seed=1).placed == 4
