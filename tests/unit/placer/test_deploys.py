from datetime import datetime, timedelta, timezone

import pytest

from services.placer import deploys
from services.placer.core import Plan
from services.placer.deploys import DeploymentView, backoff, track

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)


def dep(state="running", to=2, frm=1, progress=None, age_s=0.0):
    return DeploymentView(7, frm, to, state, progress or {"new_running": 0, "old_live": 3}, NOW - timedelta(seconds=age_s))


@pytest.mark.parametrize("d,plan,kw,want", [
    pytest.param(None, Plan(), {}, dict(create=True), id="first-deployment"),
    pytest.param(dep(to=1), Plan(), {}, dict(create=True), id="newer-version-opens-one"),
    pytest.param(dep(state="succeeded"), Plan(), {}, dict(), id="closed-stays-closed"),
    pytest.param(dep(), Plan(new_running=3, old_live=0), {}, dict(update=True, state="succeeded", succeeded=True, moved=True),
                 id="converged-succeeds"),
    pytest.param(dep(), Plan(new_running=1, old_live=3), {}, dict(update=True, state="running", moved=True),
                 id="progress-moves-clock"),
    pytest.param(dep(age_s=700), Plan(new_running=0, old_live=3), {}, dict(update=True, state="failed", rollback_to=1),
                 id="deadline-fails-and-rolls-back"),
    pytest.param(dep(age_s=700), Plan(new_running=0, old_live=3), {"auto_rollback": False},
                 dict(update=True, state="failed"), id="no-auto-rollback"),
    pytest.param(dep(age_s=700, frm=None), Plan(old_live=3), {}, dict(update=True, state="failed"),
                 id="nothing-to-roll-back-to"),
    pytest.param(dep(state="paused", age_s=700), Plan(old_live=3), {}, dict(update=True, state="paused", moved=True),
                 id="paused-is-never-late"),
])
def test_track(d, plan, kw, want):
    args = {"target": 3, "deadline_s": 600, "auto_rollback": True, "now": NOW, **kw}
    step = track(2, 1, d, plan, **args)
    got = {k: getattr(step, k) for k in ("create", "update", "state", "succeeded", "rollback_to", "moved")}
    defaults = {"create": False, "update": False, "state": "", "succeeded": False, "rollback_to": None, "moved": False}
    assert got == {**defaults, **want}
    if step.state == "failed":
        assert "no progress for 600s" in step.reason


@pytest.mark.parametrize("failures,seen,delay,reset,want_delay", [
    pytest.param(0, 0, 0.0, False, 0.0, id="no-failure"),
    pytest.param(1, 0, 0.0, False, 1.0, id="first-failure"),
    pytest.param(2, 1, 1.0, False, 1.15, id="grows-by-factor"),
    pytest.param(9, 8, 290.0, False, 300.0, id="capped"),
    pytest.param(2, 2, 1.15, False, 1.15, id="no-new-failure-keeps"),
    pytest.param(5, 2, 10.0, True, 0.0, id="new-version-resets"),
])
def test_backoff(failures, seen, delay, reset, want_delay):
    b = backoff(failures, seen, delay, None, first_s=1.0, factor=1.15, max_s=300.0, reset=reset, now=NOW)
    assert b.delay_s == pytest.approx(want_delay)
    assert b.may_launch(NOW) == (want_delay == 0.0 or failures == seen)
    if want_delay and failures > seen and not reset:
        assert b.may_launch(NOW + timedelta(seconds=want_delay))


def test_open_states():
    assert deploys.OPEN == ("running", "paused")


def _dep(state: str, to_version: int = 1) -> DeploymentView:
    return DeploymentView(id=1, from_version=None, to_version=to_version, state=state, progress={}, progress_at=NOW)


@pytest.mark.parametrize("last_good,dep,serving,want", [
    (None, None, {}, None),
    (3, None, {}, 3),
    # v1's deployment still open, both of its instances in service: v1 is good (not recorded yet).
    (None, _dep("running"), {1: 2}, 1),
    (None, _dep("running"), {1: 1}, None),        # only one of two in service: not good
    (None, _dep("failed"), {1: 2}, None),         # a failed deployment's version never is
    (4, _dep("paused", to_version=5), {5: 2}, 5),
], ids=["nothing", "recorded", "open-and-serving", "open-half-serving", "failed", "paused-serving"])
def test_rollback_target(last_good, dep, serving, want):
    assert deploys.rollback_target(last_good, dep, serving, {1: 2, 5: 2}) == want
