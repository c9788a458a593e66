"""Pure bookkeeping around a plan: the deployment record of the app's version (progress,
deadline, automatic rollback) and the crash-loop backoff.  No I/O; ``now`` is passed in."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.placer.core import Plan

OPEN = ("running", "paused")


@dataclass(frozen=True)
class DeploymentView:
    id: int
    from_version: int | None
    to_version: int
    state: str
    progress: Mapping[str, Any]
    progress_at: datetime


@dataclass(frozen=True)
class DeploymentStep:
    create: bool = False                 # open a deployment for the app's current version
    update: bool = False                 # write state/progress of the existing one
    state: str = ""
    reason: str = ""
    progress: Mapping[str, int] | None = None
    moved: bool = False
    succeeded: bool = False              # the app's version becomes its last good one
    rollback_to: int | None = None       # failed with auto_rollback: return to this version


def track(version: int, last_good: int | None, dep: DeploymentView | None, plan: Plan, *, target: int,
          deadline_s: float, auto_rollback: bool, now: datetime) -> DeploymentStep:
    if dep is None or dep.to_version < version:
        return DeploymentStep(create=True)
    if dep.state not in OPEN:
        return DeploymentStep()
    progress = {"target": target, "new_running": plan.new_running, "old_live": plan.old_live}
    before = dep.progress or {}
    moved = (progress["new_running"] > before.get("new_running", -1)
             or progress["old_live"] < before.get("old_live", 1 << 30))
    if plan.converged and plan.new_running == target:
        return DeploymentStep(update=True, state="succeeded", progress=progress, moved=True, succeeded=True)
    if dep.state == "paused":
        # A paused deployment is not late: its clock restarts when it resumes.
        return DeploymentStep(update=True, state="paused", progress=progress, moved=True)
    if not moved and now - dep.progress_at > timedelta(seconds=deadline_s):
        back = dep.from_version if auto_rollback and dep.from_version and dep.from_version != version else None
        why = f"no progress for {deadline_s:g}s ({plan.new_running} of {target} new instances in service)"
        if back is not None:
            why += f"; rolling back to version {back}"
        return DeploymentStep(update=True, state="failed", reason=why, progress=progress, rollback_to=back)
    return DeploymentStep(update=True, state="running", progress=progress, moved=moved)


def rollback_target(last_good: int | None, dep: DeploymentView | None, serving: Mapping[int, int],
                    targets: Mapping[int, int]) -> int | None:
    """The version a new deployment rolls back to: the last good one, or the version of an open
    deployment it supersedes when all that version's instances are in service -- its success was
    only not recorded yet (the placer had not looked at the app since its last instance came
    into service when the new version arrived)."""
    if dep is not None and dep.state in OPEN and targets.get(dep.to_version, 0) > 0 \
            and serving.get(dep.to_version, 0) >= targets[dep.to_version]:
        return dep.to_version
    return last_good


@dataclass(frozen=True)
class Backoff:
    delay_s: float
    launch_after: datetime | None
    failures_seen: int

    def may_launch(self, now: datetime) -> bool:
        return self.launch_after is None or now >= self.launch_after


def backoff(failures: int, seen: int, delay_s: float, launch_after: datetime | None, *, first_s: float,
            factor: float, max_s: float, reset: bool, now: datetime) -> Backoff:
    """Marathon's launch delay: each new failure multiplies the delay (first_s, then *factor,
    capped at max_s); a new version resets it."""
    if reset:
        return Backoff(0.0, None, failures)
    if failures > seen:
        delay = first_s if delay_s <= 0 else min(delay_s * factor, max_s)
        return Backoff(delay, now + timedelta(seconds=delay), failures)
    return Backoff(delay_s, launch_after, seen)
