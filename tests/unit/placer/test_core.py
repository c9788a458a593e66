import pytest

from services.placer import core
from services.placer.core import AppView, HostView, InstanceView


def app(**kw):
    base = dict(id="web", version=1, instances=3, deleted=False, cpus=0.5, mem_mb=64)
    return AppView(**{**base, **kw})


def inst(i, version=1, host="h1", state="RUNNING", desired="RUNNING"):
    return InstanceView(id=f"i{i}", version=version, host=host, state=state, desired=desired, seq=i)


HOSTS = [HostView("h1", cpus=2, mem_mb=1024), HostView("h2", cpus=2, mem_mb=1024)]


@pytest.mark.parametrize("application,instances,hosts,want_place,want_stop,want_unplaced", [
    pytest.param(app(), [], HOSTS, 3, [], 0, id="fresh-deploy"),
    pytest.param(app(), [inst(0), inst(1), inst(2)], HOSTS, 0, [], 0, id="steady-state"),
    pytest.param(app(instances=1), [inst(0), inst(1), inst(2)], HOSTS, 0, ["i2", "i1"], 0, id="scale-down-newest-first"),
    pytest.param(app(deleted=True, instances=0), [inst(0), inst(1, state="FAILED")], HOSTS, 0, ["i0"], 0,
                 id="delete-stops-live-only"),
    pytest.param(app(), [inst(0, state="FAILED")], HOSTS, 3, [], 0, id="failed-is-replaced"),
    pytest.param(app(version=2), [inst(0), inst(1)], HOSTS, 3, ["i0", "i1"], 0, id="new-version-replaces"),
    pytest.param(app(version=2, compatible_versions=frozenset({1})), [inst(0), inst(1)], HOSTS, 1, [], 0,
                 id="scale-keeps-compatible"),
    pytest.param(app(), [inst(0, desired="KILLED")], HOSTS, 3, [], 0, id="stopping-not-counted"),
    pytest.param(app(cpus=3), [], HOSTS, 0, [], 3, id="too-big"),
    pytest.param(app(), [], [], 0, [], 3, id="no-hosts"),
    pytest.param(app(instances=5, cpus=1), [], HOSTS, 4, [], 1, id="partial-fit"),
])
def test_decide(application, instances, hosts, want_place, want_stop, want_unplaced):
    plan = core.decide(application, instances, hosts, seed=1)
    assert len(plan.place) == want_place
    assert sorted(plan.stop) == sorted(want_stop)
    assert plan.unplaced == want_unplaced


def test_spreads_over_least_loaded():
    plan = core.decide(app(instances=4), [], HOSTS, seed=7)
    assert sorted(plan.place) == ["h1", "h1", "h2", "h2"]


def test_reserves_as_it_places():
    hosts = [HostView("h1", cpus=1, mem_mb=1024, cpus_used=0.5)]
    plan = core.decide(app(instances=2, cpus=0.5), [], hosts, seed=1)
    assert plan.place == ("h1",) and plan.unplaced == 1


def test_same_seed_same_plan():
    hosts = [HostView(f"h{i}", cpus=4, mem_mb=4096) for i in range(20)]
    a = core.decide(app(instances=7), [], hosts, seed=42)
    b = core.decide(app(instances=7), [], hosts, seed=42)
    assert a == b


@pytest.mark.parametrize("hosts,needle", [
    pytest.param([HostView("h1", cpus=0.2, mem_mb=4096)], "not enough free cpus: 1 host", id="cpus"),
    pytest.param([HostView("h1", cpus=4, mem_mb=16)], "not enough free memory: 1 host", id="memory"),
    pytest.param([], "no host online", id="none"),
])
def test_explains_why_nothing_fits(hosts, needle):
    plan = core.decide(app(instances=1), [], hosts, seed=1)
    assert plan.unplaced == 1
    assert needle in plan.explain()
