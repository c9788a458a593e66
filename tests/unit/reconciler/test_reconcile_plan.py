"""The reconciler's pure core: every kind of difference, the grace, the rate limit, dry run."""
from __future__ import annotations

import pytest

from libs.messages import Inventory, InventoryItem, SinkView
from services.reconciler import plan
from services.reconciler.plan import Desired, Endpoint, Instance, Observed, Policy, compare, compute

WEB = {"http": 8080}


def inst(iid: str, host: str = "h1", state: str = "RUNNING", *, epoch: int = 1, cid: str = "", app: str = "web") -> Instance:
    return Instance(iid, app, host, state, epoch, cid)


def item(iid: str, cid: str = "c1", state: str = "running", *, epoch: int = 1, app: str = "web") -> InventoryItem:
    return InventoryItem(instance=iid, app=app, container_id=cid, state=state, epoch=epoch)


def inv(host: str = "h1", *items: InventoryItem, volumes=(), leases=(), interfaces=()) -> Inventory:
    return Inventory(host=host, items=list(items), volumes=list(volumes), leases=list(leases), interfaces=list(interfaces))


def desired(*insts: Instance, in_service=None, lb=None, silent=()) -> Desired:
    return Desired({i.id: i for i in insts}, in_service or {}, lb or {}, tuple(silent))


def kinds(findings) -> list[tuple[str, str, str]]:
    return sorted((f.kind, f.where, f.instance) for f in findings)


HOST_CASES = [
    pytest.param(desired(inst("a", cid="c1")), {"h1": inv("h1", item("a", "c1"))}, [], id="agree"),
    pytest.param(desired(inst("a")), {"h1": inv("h1")}, [("missing", "h1", "a")], id="running-no-container"),
    pytest.param(desired(inst("a")), {"h1": inv("h1", item("a", state="exited"))}, [("missing", "h1", "a")],
                 id="running-container-exited"),
    pytest.param(desired(inst("a", state="PENDING")), {"h1": inv("h1")}, [], id="pending-not-yet-there"),
    pytest.param(desired(), {"h1": inv("h1", item("x"))}, [("orphan", "h1", "x")], id="no-task"),
    pytest.param(desired(inst("a", state="KILLED")), {"h1": inv("h1", item("a"))}, [("orphan", "h1", "a")],
                 id="stale-start-of-a-stopped-instance"),
    pytest.param(desired(inst("a", host="h2")), {"h1": inv("h1", item("a"))}, [("orphan", "h1", "a")],
                 id="placed-on-another-host"),
    pytest.param(desired(inst("a", state="LOST")), {"h1": inv("h1", item("a"))}, [("orphan", "h1", "a")],
                 id="host-back-after-down"),
    pytest.param(desired(inst("a", epoch=2)), {"h1": inv("h1", item("a", epoch=1))},
                 [("orphan", "h1", "a")], id="older-epoch"),
    pytest.param(desired(), {"h1": inv("h1", item("x", state="exited"))}, [], id="dead-orphan-left-to-hostd"),
    pytest.param(desired(inst("a", cid="c1")), {"h1": inv("h1", item("a", "c2"))},
                 [("container_mismatch", "h1", "a")], id="container-mismatch"),
    pytest.param(desired(inst("a")), {"h1": None}, [("unreachable", "h1", "")], id="unreachable-not-judged"),
    pytest.param(desired(inst("a", host="h2")), {"h1": inv("h1")}, [], id="other-hosts-not-asked"),
    pytest.param(desired(), {"h1": inv("h1", volumes=["v"], leases=["v"])},
                 [("leaked_lease", "h1", "v"), ("leaked_volume", "h1", "v")], id="leaks-of-unknown"),
    pytest.param(desired(inst("v", state="STARTING")), {"h1": inv("h1", volumes=["v"], leases=["v"])}, [],
                 id="volume-of-a-start-in-progress"),
    pytest.param(desired(inst("v", state="FAILED")), {"h1": inv("h1", volumes=["v"])},
                 [("leaked_volume", "h1", "v")], id="volume-of-ended"),
    pytest.param(desired(), {"h1": inv("h1", item("v"), volumes=["v"])}, [("orphan", "h1", "v")],
                 id="volume-of-an-orphan-goes-with-it"),
    pytest.param(desired(), {"h1": inv("h1", interfaces=["nx1"])}, [("leaked_interface", "h1", "")], id="interface"),
    pytest.param(desired(silent=["h9"]), {}, [("host_silent", "h9", "")], id="host-silent"),
]


@pytest.mark.parametrize("d, invs, want", HOST_CASES)
def test_hosts_compared_with_the_task_log(d, invs, want):
    assert kinds(compare(d, Observed(invs))) == sorted(want)


EPS = {"web": (Endpoint("a", "198.18.0.2", WEB), Endpoint("b", "198.18.0.3", WEB))}
LB = {20001: ("web", "http")}
SINK_CASES = [
    pytest.param(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080", "b 198.18.0.3:8080"]}), [],
                 id="haproxy-agrees"),
    pytest.param(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080"]}),
                 [("sink_missing", "sink:haproxy", "b")], id="haproxy-missing"),
    pytest.param(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080", "b 198.18.0.3:8080",
                                                                      "x 198.18.9.9:80"]}),
                 [("sink_extra", "sink:haproxy", "x")], id="haproxy-hand-added"),
    pytest.param(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080", "b 198.18.0.3:9999"]}),
                 [("sink_extra", "sink:haproxy", "b"), ("sink_missing", "sink:haproxy", "b")], id="haproxy-wrong-port"),
    pytest.param(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080", "b 198.18.0.3:8080"],
                                                           "20002": ["x 198.18.9.9:80"]}),
                 [("sink_extra", "sink:haproxy", "x")], id="haproxy-spare-frontend"),
    pytest.param(SinkView(sink="haproxy", ok=True, groups={}),
                 [("sink_missing", "sink:haproxy", "a"), ("sink_missing", "sink:haproxy", "b")], id="haproxy-no-backend"),
    pytest.param(SinkView(sink="nft", ok=True, groups={"web": ["198.18.0.2", "198.18.0.3"], "old": []}), [],
                 id="nft-agrees"),
    pytest.param(SinkView(sink="nft", ok=True, groups={"web": ["198.18.0.2"]}), [("sink_missing", "sink:nft", "")],
                 id="nft-element-deleted"),
    pytest.param(SinkView(sink="nft", ok=True, groups={"web": ["198.18.0.2", "198.18.0.3"], "old": ["198.18.7.7"]}),
                 [("sink_extra", "sink:nft", "")], id="nft-left-app-not-flushed"),
    pytest.param(SinkView(sink="ipvs", ok=True, groups={"198.18.5.1:20001": ["198.18.0.2:8080"]}),
                 [("sink_missing", "sink:ipvs", "")], id="ipvs-missing"),
    pytest.param(SinkView(sink="nft", ok=False, error="no table"), [("sink_unreadable", "sink:nft", "")],
                 id="unreadable"),
]


@pytest.mark.parametrize("view, want", SINK_CASES)
def test_sinks_compared_with_the_in_service_set(view, want):
    d = Desired(in_service=EPS, lb_ports=LB)
    assert kinds(compare(d, Observed(sinks=(view,)))) == sorted(want)


def test_prometheus_targets_compared():
    d = Desired(in_service=EPS)
    got = compare(d, Observed(prometheus=frozenset({("a", "http"), ("gone", "http")})))
    assert kinds(got) == [("prometheus_extra", "prometheus", "gone"), ("prometheus_missing", "prometheus", "b")]


def test_a_difference_is_acted_on_only_after_the_grace_and_a_second_round():
    d, obs, pol = desired(inst("a")), Observed({"h1": inv("h1")}), Policy(grace_s=5)
    r1 = compute(d, obs, {}, now=100.0, policy=pol)
    assert not r1.actions and [f.action for f in r1.findings] == ["wait"]
    r2 = compute(d, obs, r1.memory, now=103.0, policy=pol)
    assert not r2.actions, "seen twice, but not for the grace yet"
    r3 = compute(d, obs, r2.memory, now=105.0, policy=pol)
    assert r3.actions.lose == ("a",) and r3.findings[0].since == 100.0


def test_zero_grace_still_needs_two_rounds():
    d, obs, pol = desired(inst("a")), Observed({"h1": inv("h1")}), Policy(grace_s=0)
    r1 = compute(d, obs, {}, now=1.0, policy=pol)
    assert not r1.actions
    assert compute(d, obs, r1.memory, now=1.0, policy=pol).actions.lose == ("a",)


def test_a_finding_that_went_away_is_forgotten():
    pol = Policy(grace_s=0)
    r1 = compute(desired(inst("a")), Observed({"h1": inv("h1")}), {}, now=1.0, policy=pol)
    r2 = compute(desired(inst("a")), Observed({"h1": inv("h1", item("a"))}), r1.memory, now=2.0, policy=pol)
    assert r2.memory == {} and not r2.findings
    r3 = compute(desired(inst("a")), Observed({"h1": inv("h1")}), r2.memory, now=3.0, policy=pol)
    assert not r3.actions, "a new difference waits again"


def test_actions_of_each_kind():
    d = Desired({"a": inst("a")}, EPS, LB)
    obs = Observed({"h1": inv("h1", item("x", "cx"), volumes=["v"], interfaces=["nx1"])},
                   sinks=(SinkView(sink="haproxy", ok=True, groups={"20001": ["a 198.18.0.2:8080"]}),
                          SinkView(sink="nft", ok=True, groups={"web": []})))
    pol = Policy(grace_s=0)
    r = compute(d, obs, compute(d, obs, {}, 0.0, pol).memory, 1.0, pol)
    assert r.actions.lose == ("a",)
    assert sorted((i.kind, i.instance, i.key) for i in r.actions.sweeps["h1"]) == [
        ("container", "x", "cx"), ("interface", "", "nx1"), ("volume", "v", "")]
    assert r.actions.repairs == {"haproxy": ("web",), "nft": ("web",)}
    assert r.counts[plan.SINK_MISSING] == 3 and r.counts[plan.ORPHAN] == 1


def test_rate_limit_defers_the_rest():
    d = desired(*(inst(f"i{k}") for k in range(5)))
    obs, pol = Observed({"h1": inv("h1")}), Policy(grace_s=0, max_actions=2)
    r = compute(d, obs, compute(d, obs, {}, 0.0, pol).memory, 1.0, pol)
    assert len(r.actions.lose) == 2
    assert sorted(f.action for f in r.findings) == ["deferred"] * 3 + ["lose"] * 2


def test_dry_run_acts_on_nothing():
    d, obs, pol = desired(inst("a")), Observed({"h1": inv("h1", item("x"))}), Policy(grace_s=0, dry_run=True)
    r = compute(d, obs, compute(d, obs, {}, 0.0, pol).memory, 1.0, pol)
    assert not r.actions and {f.action for f in r.findings} == {"dry-run"}


def test_prometheus_differences_younger_than_its_refresh_are_not_reported():
    d, obs, pol = Desired(in_service=EPS), Observed(prometheus=frozenset({("a", "http")})), Policy(prometheus_grace_s=30)
    r1 = compute(d, obs, {}, 0.0, pol)
    assert not r1.findings and r1.counts[plan.PROMETHEUS_MISSING] == 0 and r1.memory
    r2 = compute(d, obs, r1.memory, 31.0, pol)
    assert kinds(r2.findings) == [("prometheus_missing", "prometheus", "b")] and not r2.actions
