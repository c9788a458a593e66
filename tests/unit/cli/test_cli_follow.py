"""Where a version's deployment stands, from one reading of the API (cli.follow.assess, pure),
and the loop that re-reads until it ends (cli.follow.follow, on a fake clock)."""
import pytest

from cli import errors
from cli.errors import CliError
from cli.follow import FALLBACK_POLL_S, MIN_LOOK_S, Progress, assess, follow


def app(version=2, instances=3, **over):
    return {"id": "web", "version": version, "instances": instances, "status": "running", "status_reason": "",
            "backoff": {"delay_s": 0.0, "launch_after": None}, "last_failure": None, **over}


def dep(id_=17, to=2, state="running", target=3, new=1, old=2, reason=""):
    return {"id": id_, "to_version": to, "state": state, "reason": reason,
            "progress": {"target": target, "new_running": new, "old_live": old}}


def inst(version, state="RUNNING", healthy=None):
    return {"version": version, "state": state, "healthy": healthy}


LIVE = [inst(2, healthy=True), inst(2, "STARTING"), inst(1), inst(1)]


@pytest.mark.parametrize("a, deps, live, want", [
    (app(), [], LIVE, dict(state="waiting", deployment=None, target=3, running=3, starting=1, old_live=0)),
    (app(), [dep(), dep(9, to=1, state="succeeded")], LIVE,
     dict(state="running", deployment=17, target=3, in_service=1, running=3, healthy=1, old_live=2, done=False)),
    (app(), [dep(state="succeeded", new=3, old=0)], [inst(2)] * 3,
     dict(state="succeeded", in_service=3, done=True, ok=True)),
    (app(version=3), [dep(18, to=3), dep()], LIVE, dict(state="running", deployment=17)),
    (app(version=3), [dep(18, to=3)], LIVE, dict(state="superseded", done=True, ok=False)),
    (app(status="waiting", status_reason="1 instance waiting for room (needs 64 MiB memory: 2 hosts)"),
     [dep()], LIVE, dict(state="running", reason="1 instance waiting for room (needs 64 MiB memory: 2 hosts)")),
    (app(), [dep(state="cancelled", reason="")], LIVE, dict(state="cancelled", reason="cancelled", done=True)),
], ids=["no-record-yet", "running", "succeeded", "older-version-followed", "never-began", "no-room", "cancelled"])
def test_assess(a, deps, live, want) -> None:
    p = assess("web", 2, a, deps, live)
    got = {k: getattr(p, k) for k in want}
    assert got == want, p


def test_failed_names_the_deployment_reason_and_the_last_failure_of_that_version() -> None:
    failure = {"instance": "web-abc", "state": "FAILED", "reason": "image noops/missing:latest not found",
               "at": "2026-01-01T00:00:00+00:00", "version": 2, "host": "h1"}
    p = assess("web", 2, app(last_failure=failure),
               [dep(state="failed", new=0, reason="no progress for 4s (0 of 3 new instances in service)")], [])
    assert p.done and not p.ok
    assert p.reason == ("no progress for 4s (0 of 3 new instances in service); "
                        "last failure: web-abc on h1 FAILED: image noops/missing:latest not found")
    # Another version's failure is not this one's.
    other = assess("web", 2, app(last_failure={**failure, "version": 1}), [dep(state="failed", reason="late")], [])
    assert other.reason == "late"


def test_a_crash_loop_shows_while_running() -> None:
    failure = {"instance": "web-x", "state": "FAILED", "reason": "exited 1", "version": 2, "host": "h2"}
    p = assess("web", 2, app(backoff={"delay_s": 1.15, "launch_after": None}, last_failure=failure), [dep()], [])
    assert p.reason == "backing off 1.15s after failures; last failure: web-x on h2 FAILED: exited 1"
    assert p.line().startswith("web v2 (deployment 17, running): 1/3 new in service, 0 running, 2 old left; backing off")


# ---- the follow loop, on a fake clock: readings are scripted, sleeping advances the clock


class Script:
    """Answers one scripted reading per look (a Progress, or a CliError to raise); the last repeats."""

    def __init__(self, *steps) -> None:
        self.steps, self.now, self.looks, self.shown = list(steps), 0.0, 0, []

    def look(self) -> Progress:
        step = self.steps[min(self.looks, len(self.steps) - 1)]
        self.looks += 1
        if isinstance(step, CliError):
            raise step
        return step

    def sleep(self, s: float) -> None:
        self.now += s

    def run(self, timeout_s: float, hints=None) -> Progress:
        return follow(self.look, hints, timeout_s=timeout_s, show=self.shown.append, clock=lambda: self.now,
                      sleep=self.sleep)


class Burst:
    """A stream that always has an event waiting: wait() returns at once."""
    alive = True

    def wait(self, seconds: float) -> None:
        pass


RUNNING = Progress("web", 2, deployment=1, state="running", target=2)
DONE = Progress("web", 2, deployment=1, state="succeeded", target=2, in_service=2)
DOWN = CliError(errors.UNREACHABLE, "gateway http://gw unreachable: connection refused")


def test_polls_until_done() -> None:
    s = Script(RUNNING, RUNNING, DONE)
    assert s.run(60).ok and s.looks == 3 and s.now == 2 * FALLBACK_POLL_S


def test_a_burst_of_events_is_one_look_per_min_interval() -> None:
    s = Script(RUNNING, RUNNING, RUNNING, DONE)
    assert s.run(60, hints=Burst()).ok and s.now == pytest.approx(3 * MIN_LOOK_S)


def test_times_out_with_the_last_reading() -> None:
    s = Script(RUNNING)
    p = s.run(3.5)
    assert not p.done and p == RUNNING and s.now == 3.5


def test_a_gateway_away_for_a_while_is_waited_out() -> None:
    s = Script(RUNNING, DOWN, DOWN, DONE)
    assert s.run(60).ok
    assert s.shown[1].reason == "gateway http://gw unreachable: connection refused; retrying"


@pytest.mark.parametrize("steps, code", [
    ((DOWN,), errors.UNREACHABLE),                                     # never reached: say so at once
    ((RUNNING, DOWN), errors.UNREACHABLE),                             # away until the deadline
    ((RUNNING, CliError(errors.NOT_FOUND, "app 'web' not found")), errors.NOT_FOUND),  # deleted meanwhile
], ids=["first-reading", "until-the-deadline", "not-transient"])
def test_errors_that_end_the_watch(steps, code) -> None:
    with pytest.raises(CliError) as e:
        Script(*steps).run(5)
    assert e.value.code == code
