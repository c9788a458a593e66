import pytest

from services.placer import core
from services.placer.core import AppView, InstanceView
from services.placer.snapshot import ClusterSnapshot, HostRow


def app(**kw):
    base = dict(id="web", version=1, instances=3, deleted=False, cpus=0.5, mem_mb=64)
    return AppView(**{**base, **kw})


def inst(i, version=1, host="h1", state="RUNNING", desired="RUNNING", in_service=None):
    return InstanceView(id=f"i{i}", version=version, host=host, state=state, desired=desired, seq=i,
                        in_service=in_service)


def hosts(n=2, cpus=2.0, mem=1024.0, **kw):
    return ClusterSnapshot([HostRow(f"h{k + 1}", cpus, mem, **kw) for k in range(n)])


@pytest.mark.parametrize("application,instances,want_place,want_stop,want_unplaced", [
    pytest.param(app(), [], 3, [], 0, id="fresh-deploy"),
    pytest.param(app(), [inst(0), inst(1), inst(2)], 0, [], 0, id="steady-state"),
    pytest.param(app(instances=1), [inst(0), inst(1), inst(2)], 0, ["i2", "i1"], 0, id="scale-down-newest-first"),
    pytest.param(app(deleted=True, instances=0), [inst(0), inst(1, state="FAILED")], 0, ["i0"], 0,
                 id="delete-stops-live-only"),
    pytest.param(app(), [inst(0, state="FAILED")], 3, [], 0, id="failed-is-replaced"),
    pytest.param(app(version=2, compatible_versions=frozenset({1})), [inst(0), inst(1)], 1, [], 0,
                 id="scale-keeps-compatible"),
    pytest.param(app(), [inst(0, desired="KILLED")], 3, [], 0, id="stopping-not-counted"),
    pytest.param(app(cpus=3), [], 0, [], 3, id="too-big"),
    pytest.param(app(instances=5, cpus=1), [], 4, [], 1, id="partial-fit"),
    pytest.param(app(may_launch=False), [inst(0, state="FAILED")], 0, [], 0, id="backoff-holds-relaunch"),
])
def test_decide(application, instances, want_place, want_stop, want_unplaced):
    plan = core.decide(application, instances, hosts().scratch(), seed=1)
    assert len(plan.place) == want_place
    assert sorted(plan.stop) == sorted(want_stop)
    assert plan.unplaced == want_unplaced


# Rolling update from version 1 (3 RUNNING) to version 2, by Marathon's knobs.
@pytest.mark.parametrize("mhc,moc,new_states,want_place,want_stop", [
    pytest.param(1.0, 1.0, [], 3, 0, id="default-starts-all-new-kills-none"),
    pytest.param(1.0, 1.0, ["RUNNING", "RUNNING", "STARTING"], 0, 2, id="default-kills-as-new-become-healthy"),
    pytest.param(1.0, 1.0, ["RUNNING"] * 3, 0, 3, id="default-done"),
    pytest.param(0.5, 0.0, [], 1, 1, id="kill-one-to-make-room-for-one"),
    pytest.param(1.0, 0.0, [], 1, 0, id="mhc1-moc0-one-over-at-a-time"),
    pytest.param(1.0, 0.0, ["RUNNING"], 1, 1, id="mhc1-moc0-then-kill-one-start-one"),
    pytest.param(0.0, 0.0, [], 3, 3, id="mhc0-replaces-all-at-once"),
    pytest.param(0.5, 1.0, ["STARTING"] * 3, 0, 1, id="kills-only-down-to-min-healthy"),
])
def test_rolling_update(mhc, moc, new_states, want_place, want_stop):
    old = [inst(k, version=1) for k in range(3)]
    new = [inst(10 + k, version=2, state=s) for k, s in enumerate(new_states)]
    a = app(version=2, minimum_health_capacity=mhc, maximum_over_capacity=moc)
    plan = core.decide(a, old + new, hosts(cpus=8).scratch(), seed=1)
    assert (len(plan.place), len(plan.stop)) == (want_place, want_stop)
    assert all(s.startswith("i") and int(s[1:]) < 10 for s in plan.stop), "only old instances are stopped"


# With health checks, a new instance counts only once in service (RUNNING and healthy).
@pytest.mark.parametrize("new_serving,want_stop,new_running", [
    pytest.param([None, None, None], 0, 0, id="running-but-no-verdict-yet-kills-none"),
    pytest.param([True, None, False], 1, 1, id="kills-one-per-healthy-new"),
    pytest.param([True, True, True], 3, 3, id="all-healthy-done"),
])
def test_rolling_update_waits_for_health(new_serving, want_stop, new_running):
    old = [inst(k, version=1, in_service=True) for k in range(3)]
    new = [inst(10 + k, version=2, in_service=bool(s)) for k, s in enumerate(new_serving)]
    plan = core.decide(app(version=2), old + new, hosts(cpus=8).scratch(), seed=1)
    assert (len(plan.stop), plan.new_running) == (want_stop, new_running)


def test_unhealthy_old_instance_goes_at_once():
    old = [inst(0, version=1, in_service=False), inst(1, version=1, in_service=True)]
    plan = core.decide(app(version=2, instances=2), old, hosts(cpus=8).scratch(), seed=1)
    assert plan.stop == ("i0",)


def test_paused_deployment_takes_no_step():
    old = [inst(k, version=1) for k in range(3)]
    plan = core.decide(app(version=2, paused=True), old, hosts().scratch(), seed=1)
    assert not plan.place and not plan.stop and plan.old_live == 3


def test_draining_host_instances_move_under_the_knobs():
    live = [inst(0, host="h1"), inst(1, host="h2"), inst(2, host="h2")]
    plan = core.decide(app(), live, hosts(3).scratch(), seed=1, draining=frozenset({"h1"}))
    assert len(plan.place) == 1 and "h1" not in plan.place and plan.stop == ()
    live.append(inst(3, host="h3"))
    plan = core.decide(app(), live, hosts(3).scratch(), seed=1, draining=frozenset({"h1"}))
    assert plan.stop == ("i0",) and not plan.place


def test_same_seed_same_plan():
    snap = hosts(20, cpus=4)
    a = core.decide(app(instances=7), [], snap.scratch(), seed=42)
    b = core.decide(app(instances=7), [], snap.scratch(), seed=42)
    assert a == b


def test_explains_why_nothing_fits():
    plan = core.decide(app(instances=1, cpus=4), [], hosts(3).scratch(), seed=1)
    assert plan.explain() == "1 instance waiting for room (needs 4 cpus: 3 hosts)"
    empty = core.decide(app(instances=2), [], ClusterSnapshot([]).scratch(), seed=1)
    assert empty.explain() == "2 instances waiting for room (no host online)"
