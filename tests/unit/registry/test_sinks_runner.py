"""The sink runner: isolation, newest-state-wins queueing, backoff on failure, convergence after."""
from __future__ import annotations

import asyncio

from libs.messages import Endpoint
from services.registry.sinks.model import AppState, Desired
from libs import retry
from services.registry.sinks.runner import SinkRunner
from tests.support.wait import eventually


class RecordingSink:
    """A simulator with real behaviour: holds per app the last state it was given, and fails on
    demand (``down``) as a sink whose backend is unreachable does."""

    def __init__(self, name: str = "rec") -> None:
        self.name, self.down, self.held, self.calls = name, False, {}, []

    async def apply_full(self, desired: Desired) -> None:
        self.calls.append(("full", sorted(desired)))
        if self.down:
            raise ConnectionError("down")
        self.held = {a: s.ips() for a, s in desired.items()}

    async def update(self, changes: Desired) -> None:
        self.calls.append(("update", sorted(changes)))
        if self.down:
            raise ConnectionError("down")
        self.held.update({a: s.ips() for a, s in changes.items()})

    def forget(self, apps) -> None:
        self.calls.append(("forget", sorted(apps)))
        for a in apps:
            self.held.pop(a, None)

    async def close(self) -> None:
        pass


def st(app: str, *ips: str, at: float = 0.0) -> AppState:
    return AppState(app, tuple(Endpoint(instance=f"{app}-{i}", host="h", ip=ip, ports={}) for i, ip in enumerate(ips)),
                    read_at=at)


async def test_newest_state_per_app_wins_and_older_changes_fold_into_a_full_snapshot():
    sink = RecordingSink()
    r = SinkRunner(sink)
    r.submit({"a": st("a", "198.18.0.1", at=1)})
    r.submit({"a": st("a", "198.18.0.2", at=2), "b": st("b", at=2)})
    r.submit({"a": st("a", "198.18.0.9", at=1.5)})          # older read: ignored
    r.submit_full({"a": st("a", "198.18.0.3", at=3)})        # contains everything read before
    r.submit({"c": st("c", "198.18.0.4", at=4)})
    assert await r.step() and await r.step() and r.idle
    assert sink.calls == [("full", ["a"]), ("update", ["c"])]
    assert sink.held == {"a": {"198.18.0.3"}, "c": {"198.18.0.4"}}


async def test_failing_sink_keeps_its_work_backs_off_and_converges_without_blocking_others():
    bad, good = RecordingSink("bad"), RecordingSink("good")
    bad.down = True
    runners = [SinkRunner(s, backoff=retry.Policy(base_s=0.01, cap_s=0.05)) for s in (bad, good)]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        for r in runners:
            r.submit({"a": st("a", "198.18.0.1", at=1)})
        await eventually(lambda: good.held == {"a": {"198.18.0.1"}}, timeout=5, what="good sink applied")
        await eventually(lambda: runners[0].failures >= 3, timeout=5, what="bad sink retried")
        for r in runners:   # newer state arrives while the bad sink is down
            r.submit({"a": st("a", "198.18.0.2", at=2), "b": st("b", "198.18.0.3", at=2)})
        await eventually(lambda: good.held["a"] == {"198.18.0.2"}, timeout=5, what="good sink kept going")
        bad.down = False
        await eventually(lambda: runners[0].idle and runners[0].failures == 0, timeout=5, what="bad sink recovered")
        assert bad.held == good.held == {"a": {"198.18.0.2"}, "b": {"198.18.0.3"}}
    finally:
        for t in tasks:
            t.cancel()


async def test_observers_see_what_was_applied():
    seen = []
    r = SinkRunner(RecordingSink(), observers=(lambda name, work, at: seen.append((name, sorted(work))),))
    r.submit({"a": st("a", at=1)})
    await r.step()
    assert seen == [("rec", ["a"])]


async def test_a_repair_forgets_in_the_runners_step_just_before_applying():
    sink = RecordingSink()
    r = SinkRunner(sink)
    r.submit_repair({"a": st("a", "198.18.0.1", at=1)})
    r.submit_repair({"b": st("b", at=1)})
    assert sink.calls == []                     # nothing touches the sink outside the runner's step
    assert await r.step() and r.idle
    assert sink.calls == [("forget", ["a", "b"]), ("update", ["a", "b"])]
    r.submit({"a": st("a", "198.18.0.2", at=2)})   # a plain change forgets nothing
    await r.step()
    assert sink.calls[-1] == ("update", ["a"])
