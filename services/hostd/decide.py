"""What to do with one placement, decided from what hostd knows of its instance; no I/O.

Why a stop wins over a start: the start and the stop of an instance carry the same epoch (the
host's epoch when it was placed), so the epoch alone cannot order them.  A start redelivered
after a nak or an ack timeout, or overtaken by its stop, would otherwise create a container
that nothing owns any more.  Instance ids are never reused (the placer replaces a FAILED or
stopped instance under a new id), so once an instance has ended here -- stopped, killed by its
health checks, failed to start or died -- every later start for it is old news.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal


class Act(enum.Enum):
    CREATE = "create"   # no running container: (re)make it
    ADOPT = "adopt"     # it runs already: take it over, report RUNNING again
    STOP = "stop"       # stop whatever there is; KILLED even when nothing was there
    IGNORE = "ignore"   # old news: ack and do nothing


class Found(enum.Enum):
    """The instance's containers on the engine, summed up."""
    RUNNING = "running"
    EXITED = "exited"   # only exited / created / dead ones
    NONE = "none"


def found(states: Iterable[str]) -> Found:
    """Docker's container states of one instance → Found."""
    states = list(states)
    if "running" in states:
        return Found.RUNNING
    return Found.EXITED if states else Found.NONE


@dataclass(frozen=True)
class Tombstone:
    """The instance ended here at ``epoch`` with ``state`` (KILLED or FAILED), at unix time ``at``."""
    epoch: int
    state: str
    at: float


@dataclass(frozen=True)
class Known:
    """What hostd knows of one instance when a placement for it comes in."""
    found: Found = Found.NONE
    seen_epoch: int = 0                 # highest placement epoch acted on (0: none)
    tombstone: Tombstone | None = None


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str     # for the log: why this act
    outcome: str    # metric label (noops_hostd_placements_total{outcome}) when ignored


def decide(action: Literal["start", "stop"], epoch: int, known: Known) -> Decision:
    # Order matters: the tombstone before the epoch, so a stale start of an ended instance is
    # counted as what it is most usefully called ("ended"); the epoch check applies to both.
    t = known.tombstone
    if action == "start" and t is not None:
        return Decision(Act.IGNORE, f"instance ended here ({t.state} at epoch {t.epoch}); ids are never reused",
                        "ended")
    if epoch < known.seen_epoch:
        return Decision(Act.IGNORE, f"epoch {epoch} is older than {known.seen_epoch} acted on", "stale")
    if action == "stop":
        what = {Found.RUNNING: "a running container", Found.EXITED: "an exited container",
                Found.NONE: "nothing to stop; KILLED all the same"}[known.found]
        return Decision(Act.STOP, what, "done")
    if known.found is Found.RUNNING:
        return Decision(Act.ADOPT, "already running", "done")
    if known.found is Found.EXITED:
        return Decision(Act.CREATE, "only exited containers (removed first)", "done")
    return Decision(Act.CREATE, "no container yet", "done")
