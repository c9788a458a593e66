"""The pure health-check core: verdicts from results and times (fake time, no I/O)."""
from __future__ import annotations

import pytest

from libs.messages import HealthCheckSpec
from services.hostd import health
from services.hostd.health import CheckState, Result

CHECK = HealthCheckSpec(protocol="HTTP", name="http /health", port=8080, path="/health", grace_period_s=10,
                        interval_s=2, timeout_s=1, max_consecutive_failures=3)
OK, BAD = Result(True, "status 200"), Result(False, "status 500")


def run(results: list[tuple[float, Result]], check: HealthCheckSpec = CHECK) -> list[CheckState]:
    """Feed (time, result) pairs from a start at t=0; the states after each."""
    state, out = health.first(0.0), []
    for now, result in results:
        state = health.observe(check, state, result, started_at=0.0, now=now)
        out.append(state)
    return out


@pytest.mark.parametrize(("results", "healthy", "failures", "doomed"), [
    pytest.param([(0, OK)], True, 0, False, id="first-success-healthy"),
    pytest.param([(0, BAD), (2, BAD), (4, BAD), (6, BAD)], None, 0, False, id="grace-failures-not-counted"),
    pytest.param([(0, BAD), (12, BAD)], False, 1, False, id="first-counted-failure-unhealthy"),
    pytest.param([(12, BAD), (14, BAD), (16, BAD)], False, 3, True, id="limit-reached"),
    pytest.param([(12, BAD), (14, BAD), (16, OK), (18, BAD)], False, 1, False, id="success-resets-count"),
    pytest.param([(0, OK), (2, BAD)], False, 1, False, id="success-ends-grace-early"),
    pytest.param([(0, OK), (2, BAD), (4, BAD), (6, BAD)], False, 3, True, id="killed-inside-grace-once-proven"),
    pytest.param([(12, BAD), (14, OK)], True, 0, False, id="recovers"),
])
def test_observe(results: list[tuple[float, Result]], healthy: bool | None, failures: int, doomed: bool) -> None:
    last = run(results)[-1]
    assert (last.healthy, last.failures, health.doomed(CHECK, last)) == (healthy, failures, doomed)


def test_next_check_is_one_interval_after_the_result() -> None:
    assert health.first(5.0).next_at == 5.0
    assert run([(3.5, OK)])[-1].next_at == 5.5


def test_zero_limit_never_kills() -> None:
    check = HealthCheckSpec(protocol="TCP", name="tcp http", port=8080, grace_period_s=0,
                            max_consecutive_failures=0)
    last = run([(t, BAD) for t in range(100)], check)[-1]
    assert last.failures == 100 and not health.doomed(check, last)


@pytest.mark.parametrize(("states", "healthy", "text"), [
    pytest.param([], None, "", id="no-checks"),
    pytest.param([CheckState()], None, "", id="nothing-yet"),
    pytest.param([CheckState(True, last="a: ok"), CheckState()], None, "a: ok", id="one-unknown"),
    pytest.param([CheckState(True, last="a: ok"), CheckState(True, last="b: ok")], True, "a: ok", id="all-healthy"),
    pytest.param([CheckState(True, last="a: ok"), CheckState(False, 1, "b: bad")], False, "b: bad",
                 id="one-unhealthy"),
])
def test_verdict(states: list[CheckState], healthy: bool | None, text: str) -> None:
    assert health.verdict(states) == health.Verdict(healthy, text)


def test_kill_reason_names_check_count_and_result() -> None:
    last = run([(12, BAD), (14, BAD), (16, BAD)])[-1]
    assert health.kill_reason(CHECK, last) == "health check http /health failed 3 times: status 500"


def test_a_check_failing_while_its_app_starts_is_retried_soon_then_less_often() -> None:
    """Quick retries (0.1, 0.2, 0.4, ... up to the interval) only before the first success and in
    the grace period; after a success, or once failures count, a whole interval."""
    state, times = health.first(0.0), []
    now = 0.0
    for _ in range(6):
        state = health.observe(CHECK, state, BAD, started_at=0.0, now=now, first_retry_s=0.1)
        times.append(round(state.next_at - now, 3))
        now = state.next_at
    assert times == [0.1, 0.2, 0.4, 0.8, 1.6, 2]
    assert state.healthy is None and state.failures == 0
    passed = health.observe(CHECK, state, OK, started_at=0.0, now=now, first_retry_s=0.1)
    again = health.observe(CHECK, passed, BAD, started_at=0.0, now=passed.next_at, first_retry_s=0.1)
    assert again.next_at - passed.next_at == CHECK.interval_s          # proven: every failure counts
    late = health.observe(CHECK, health.first(0.0), BAD, started_at=0.0, now=11.0, first_retry_s=0.1)
    assert late.next_at == 11.0 + CHECK.interval_s and late.failures == 1   # past the grace period
    assert health.observe(CHECK, health.first(0.0), BAD, started_at=0.0, now=0.0).next_at == CHECK.interval_s
