"""The registry's pure core: is this IP report to be believed, and what does it change?

A report is accepted only when the task log places that instance, at that epoch, on the host
that reported it, and (IPAM mode "pool") with the address reserved for it.  Its form was checked
before (screen.py).  State never goes backwards: a late STARTING after RUNNING, or anything after
a terminal state, changes nothing (so redelivered or reordered reports are harmless).  A RUNNING
report whose only news is health (healthy/health) is a change too, if that verdict is newer than
the one recorded.
"""
from __future__ import annotations

from dataclasses import dataclass

import msgspec

from libs.messages import TERMINAL, IpReport

_RANK = {"PENDING": 0, "STARTING": 1, "RUNNING": 2, "FAILED": 3, "KILLED": 3, "LOST": 3}

UNKNOWN_INSTANCE = "unknown instance"
WRONG_HOST = "instance placed on another host"
WRONG_APP = "instance belongs to another app"
STALE_EPOCH = "stale epoch"
HOST_MISMATCH = "report names another host than its subject"
NOT_RESERVED = "address is not the one reserved for the instance"


class Row(msgspec.Struct, frozen=True):
    """What the task log holds for the instance (a Struct: built and copied for every report of
    a batch, where a frozen dataclass's ``__init__`` and ``replace`` were a third of judging)."""
    id: str
    app: str
    host: str
    epoch: int
    state: str
    desired: str
    ip: str
    container_id: str
    healthy: bool | None = None
    health: str = ""
    health_at: float = 0.0     # when hostd reached the verdict in healthy/health (its clock)
    has_checks: bool = False   # the instance's version has health checks
    address: str = ""          # IPAM mode "pool": the address the placer reserved (CIDR form)
    version: int = 0           # the app version the instance runs (its change events carry it)


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""         # why a report was rejected
    changed: bool = False    # whether the task log must be written
    state_changed: bool = False
    health_changed: bool = False


def judge(report: IpReport, subject_host: str, row: Row | None) -> Verdict:
    if report.host != subject_host:
        return Verdict(False, HOST_MISMATCH)
    if row is None:
        return Verdict(False, UNKNOWN_INSTANCE)
    if row.host != report.host:
        return Verdict(False, WRONG_HOST)
    if row.app != report.app:
        return Verdict(False, WRONG_APP)
    if report.epoch != row.epoch:
        return Verdict(False, STALE_EPOCH)
    if row.address and report.ip and report.ip != row.address.partition("/")[0]:
        return Verdict(False, NOT_RESERVED)
    if row.state in TERMINAL or _RANK[report.state] < _RANK[row.state]:
        return Verdict(True)  # old news
    health_changed = fresh_health(report, row) and report.state == "RUNNING" and (
        report.healthy != row.healthy or report.health != row.health)
    if (report.state == row.state and report.ip == row.ip and report.container_id == row.container_id
            and not health_changed):
        return Verdict(True)  # a duplicate
    return Verdict(True, changed=True, state_changed=report.state != row.state, health_changed=health_changed)


def fresh_health(report: IpReport, row: Row) -> bool:
    """Whether the report carries health news newer than the verdict the task log holds: an
    older verdict redelivered or overtaken (a 'healthy' arriving after the 'unhealthy' that
    followed it) must not win."""
    return bool(report.health) and report.at >= row.health_at


def in_service(state: str, healthy: bool | None, has_checks: bool) -> bool:
    """The rule of noops_in_service() (migration 0006), for deciding whether to announce:
    RUNNING, and healthy when the version has health checks."""
    return state == "RUNNING" and (healthy is True or not has_checks)
