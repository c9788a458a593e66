"""The placement decision (decide.py) and the tombstones that feed it (tombstones.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from services.hostd.decide import Act, Found, Known, Tombstone, decide, found
from services.hostd.tombstones import Tombstones, kept

KILLED_AT_3 = Tombstone(epoch=3, state="KILLED", at=100.0)
FAILED_AT_3 = Tombstone(epoch=3, state="FAILED", at=100.0)


@pytest.mark.parametrize(("action", "epoch", "known", "act", "outcome"), [
    pytest.param("start", 1, Known(), Act.CREATE, "done", id="start-new"),
    pytest.param("start", 1, Known(found=Found.RUNNING, seen_epoch=1), Act.ADOPT, "done", id="start-redelivered-running"),
    pytest.param("start", 2, Known(found=Found.RUNNING, seen_epoch=1), Act.ADOPT, "done", id="start-newer-epoch-adopts"),
    pytest.param("start", 1, Known(found=Found.EXITED, seen_epoch=1), Act.CREATE, "done",
                 id="start-after-crash-mid-start"),
    pytest.param("start", 1, Known(seen_epoch=2), Act.IGNORE, "stale", id="start-older-epoch"),
    pytest.param("start", 3, Known(seen_epoch=3, tombstone=KILLED_AT_3), Act.IGNORE, "ended",
                 id="start-same-epoch-after-stop"),
    pytest.param("start", 9, Known(seen_epoch=3, tombstone=KILLED_AT_3), Act.IGNORE, "ended",
                 id="start-newer-epoch-after-stop"),
    pytest.param("start", 3, Known(tombstone=KILLED_AT_3), Act.IGNORE, "ended",
                 id="start-after-stop-and-restart"),  # the epoch map is lost with hostd, the tombstone is not
    pytest.param("start", 3, Known(found=Found.RUNNING, seen_epoch=3, tombstone=FAILED_AT_3), Act.IGNORE,
                 "ended", id="start-after-failed"),
    pytest.param("stop", 1, Known(found=Found.RUNNING, seen_epoch=1), Act.STOP, "done", id="stop-running"),
    pytest.param("stop", 1, Known(found=Found.EXITED, seen_epoch=1), Act.STOP, "done", id="stop-exited"),
    pytest.param("stop", 4, Known(), Act.STOP, "done", id="stop-nothing-still-killed"),
    pytest.param("stop", 3, Known(seen_epoch=3, tombstone=KILLED_AT_3), Act.STOP, "done", id="stop-redelivered"),
    pytest.param("stop", 3, Known(seen_epoch=3, tombstone=FAILED_AT_3), Act.STOP, "done", id="stop-after-failed"),
    pytest.param("stop", 4, Known(found=Found.RUNNING, seen_epoch=5), Act.IGNORE, "stale", id="stop-older-epoch"),
])
def test_decide(action, epoch: int, known: Known, act: Act, outcome: str) -> None:
    d = decide(action, epoch, known)
    assert (d.act, d.outcome) == (act, outcome)
    assert d.reason


@pytest.mark.parametrize(("states", "want"), [
    pytest.param([], Found.NONE, id="none"),
    pytest.param(["exited"], Found.EXITED, id="exited"),
    pytest.param(["created", "dead"], Found.EXITED, id="half-made"),
    pytest.param(["exited", "running"], Found.RUNNING, id="one-running"),
])
def test_found(states: list[str], want: Found) -> None:
    assert found(states) is want


def _t(at: float) -> Tombstone:
    return Tombstone(epoch=1, state="KILLED", at=at)


@pytest.mark.parametrize(("items", "now", "max_count", "max_age_s", "want"), [
    pytest.param({}, 10.0, 5, 100.0, [], id="empty"),
    pytest.param({"a": _t(1), "b": _t(2)}, 10.0, 5, 100.0, ["a", "b"], id="all-young"),
    pytest.param({"a": _t(1), "b": _t(50)}, 100.0, 5, 60.0, ["b"], id="too-old-dropped"),
    pytest.param({"c": _t(3), "a": _t(1), "b": _t(2)}, 10.0, 2, 100.0, ["b", "c"], id="count-keeps-newest"),
    pytest.param({"a": _t(1)}, 61.0, 5, 60.0, [], id="exactly-at-age-dropped"),
])
def test_kept(items, now: float, max_count: int, max_age_s: float, want: list[str]) -> None:
    assert list(kept(items, now=now, max_count=max_count, max_age_s=max_age_s)) == want


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_tombstones_survive_a_restart_bounded(tmp_path: Path) -> None:
    clock = Clock()
    ts = Tombstones(tmp_path / "tombstones", max_count=2, max_age_s=60.0, clock=clock)
    for i, inst in enumerate(("a", "b", "c")):
        clock.t += 1
        ts.add(inst, epoch=i, state="KILLED")
    assert "a" not in ts and len(ts) == 2  # the oldest went first
    assert sorted(p.name for p in (tmp_path / "tombstones").iterdir()) == ["b.json", "c.json"]

    again = Tombstones(tmp_path / "tombstones", max_count=2, max_age_s=60.0, clock=clock)
    assert again.get("c") == Tombstone(epoch=2, state="KILLED", at=1003.0)
    clock.t += 59.5  # b (at 1002) is now past 60 s, c (1003) not yet
    later = Tombstones(tmp_path / "tombstones", max_count=2, max_age_s=60.0, clock=clock)
    assert "b" not in later and "c" in later
    assert [p.name for p in (tmp_path / "tombstones").iterdir()] == ["c.json"]


def test_tombstones_without_directory_and_unreadable_files(tmp_path: Path) -> None:
    mem = Tombstones(None)
    mem.add("a", epoch=1, state="FAILED")
    assert mem.get("a") is not None
    (tmp_path / "x.json").write_text("{not json")
    assert len(Tombstones(tmp_path)) == 0 and not (tmp_path / "x.json").exists()
