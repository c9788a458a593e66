"""Health-check verdicts, pure: (check, what it knew, one result, times) -> what it knows now.
No I/O; times are passed in, so tests drive them by hand.

Marathon's rules: a failure inside the grace period after the start does not count (a success
ends the grace period early); outside it, the first failure makes the check unhealthy and
``max_consecutive_failures`` in a row (> 0) kill the instance; a success resets the count.
An instance is healthy when all its checks are, unhealthy when one is, unknown otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from libs.messages import HealthCheckSpec


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str          # "status 200", "connection refused", "exit code 1: <output>"


@dataclass(frozen=True)
class CheckState:
    healthy: bool | None = None   # None: no result counted yet
    failures: int = 0             # consecutive counted failures
    last: str = ""                # the last result, "http /health: status 500"
    proven: bool = False          # a success was seen: the grace period is over
    next_at: float = 0.0          # when the check is due next
    early: int = 0                # failures in the grace period before any success (quick retries)


def first(started_at: float) -> CheckState:
    """A check is due as soon as its instance runs."""
    return CheckState(next_at=started_at)


def early_retry_s(interval_s: float, first_retry_s: float, early: int) -> float:
    """How soon a check that failed ``early`` times in its grace period, never passing yet, runs
    again: ``first_retry_s``, doubling, up to the check's interval (0: always the interval)."""
    if first_retry_s <= 0:
        return interval_s
    return min(interval_s, first_retry_s * 2 ** min(early, 30))


def observe(check: HealthCheckSpec, state: CheckState, result: Result, *, started_at: float,
            now: float, first_retry_s: float = 0.0) -> CheckState:
    """``first_retry_s``: see ``early_retry_s`` (NOOPS_HOSTD_HEALTH_FIRST_RETRY_S)."""
    last = f"{check.name}: {result.detail}"
    nxt = now + check.interval_s
    if result.ok:
        return CheckState(healthy=True, failures=0, last=last, proven=True, next_at=nxt)
    if not state.proven and now < started_at + check.grace_period_s:
        # In the grace period: does not count.  The app is most likely still coming up (the first
        # check runs as soon as the process does): look again soon, then less and less often, so
        # an app listening a moment after its start is healthy then, not a whole interval later.
        return replace(state, last=last, early=state.early + 1,
                       next_at=now + early_retry_s(check.interval_s, first_retry_s, state.early))
    return CheckState(healthy=False, failures=state.failures + 1, last=last, proven=state.proven, next_at=nxt)


def doomed(check: HealthCheckSpec, state: CheckState) -> bool:
    """Past the failure limit: the instance is to be killed."""
    return 0 < check.max_consecutive_failures <= state.failures


@dataclass(frozen=True)
class Verdict:
    healthy: bool | None
    health: str          # the result that decided it ("" while unknown with no result)


def verdict(states: Sequence[CheckState]) -> Verdict:
    """All healthy -> healthy (the last result of the first check); any unhealthy -> unhealthy
    (that check's last result); otherwise unknown."""
    for s in states:
        if s.healthy is False:
            return Verdict(False, s.last)
    if states and all(s.healthy for s in states):
        return Verdict(True, states[0].last)
    return Verdict(None, next((s.last for s in states if s.last), ""))


def kill_reason(check: HealthCheckSpec, state: CheckState) -> str:
    """'health check http /health failed 3 times: status 500'"""
    detail = state.last.removeprefix(f"{check.name}: ")
    return f"health check {check.name} failed {state.failures} times: {detail}"
