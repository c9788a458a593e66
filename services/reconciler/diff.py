"""The reconciler's pure core: compare what the task log says runs where with what the hosts
report, and name every difference.  No I/O; repairs come in a later issue."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from libs.messages import Inventory

MISSING = "missing"            # task log: running here; host: no running container
UNEXPECTED = "unexpected"      # host runs a container the task log does not place there
CONTAINER_MISMATCH = "container_mismatch"  # both know the instance, with different containers
UNREACHABLE = "unreachable"    # host did not answer the inventory request
KINDS = (MISSING, UNEXPECTED, CONTAINER_MISMATCH, UNREACHABLE)


@dataclass(frozen=True)
class Placed:
    instance: str
    host: str
    state: str
    container_id: str


@dataclass(frozen=True)
class Drift:
    kind: str
    host: str
    instance: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Report:
    drift: tuple[Drift, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


def diff(placed: Sequence[Placed], inventories: Mapping[str, Inventory | None]) -> Report:
    """``placed``: non-terminal instances of the task log; ``inventories``: host -> answer
    (None when the host did not answer).  Hosts absent from ``inventories`` are not judged."""
    by_host: dict[str, dict[str, Placed]] = {}
    for p in placed:
        by_host.setdefault(p.host, {})[p.instance] = p
    out: list[Drift] = []
    for host, inv in inventories.items():
        expected = by_host.get(host, {})
        if inv is None:
            out.append(Drift(UNREACHABLE, host, detail=f"{len(expected)} instances unverified"))
            continue
        seen = {i.instance: i for i in inv.items}
        for iid, p in expected.items():
            item = seen.get(iid)
            if p.state == "RUNNING" and (item is None or item.state != "running"):
                out.append(Drift(MISSING, host, iid, "no container" if item is None else f"container {item.state}"))
            elif item is not None and p.container_id and item.container_id != p.container_id:
                out.append(Drift(CONTAINER_MISMATCH, host, iid,
                                 f"task log {p.container_id[:12]}, host {item.container_id[:12]}"))
        for iid, item in seen.items():
            if iid not in expected and item.state == "running":
                out.append(Drift(UNEXPECTED, host, iid, f"container {item.container_id[:12]}"))
    counts = {k: 0 for k in KINDS}
    for d in out:
        counts[d.kind] += 1
    return Report(tuple(out), counts)
