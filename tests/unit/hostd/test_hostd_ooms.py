"""Telling an OOM kill from any other SIGKILL when the engine's OOMKilled flag is not set."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.hostd import containers as ct
from services.hostd import events
from services.hostd.ooms import OomKills, cgroup_oom_killed, oom_kill_count
from services.hostd.runtime import RuntimeUnavailable
from tests.support.wait import eventually


@pytest.mark.parametrize(("text", "count"), [
    pytest.param("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", 1, id="cgroup-v1-oom_control"),
    pytest.param("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n", 2, id="cgroup-v2-memory.events"),
    pytest.param("oom_kill_disable 0\nunder_oom 0\n", 0, id="old-kernel-no-counter"),
    pytest.param("oom_kill x\n", 0, id="garbled"),
    pytest.param("", 0, id="empty"),
])
def test_oom_kill_count(text: str, count: int) -> None:
    assert oom_kill_count(text) == count


@pytest.mark.parametrize(("layout", "killed"), [
    pytest.param({"memory/docker/c1/memory.oom_control": "under_oom 0\noom_kill 1\n"}, True, id="v1-cgroupfs"),
    pytest.param({"system.slice/docker-c1.scope/memory.events": "oom 1\noom_kill 1\n"}, True, id="v2-systemd"),
    pytest.param({"docker/c1/memory.events": "oom 0\noom_kill 0\n"}, False, id="v2-no-kill"),
    pytest.param({}, False, id="cgroup-gone"),
])
def test_cgroup_oom_killed(tmp_path: Path, layout: dict[str, str], killed: bool) -> None:
    for rel, text in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True)
        (tmp_path / rel).write_text(text)
    assert cgroup_oom_killed("c1", root=tmp_path) is killed


@pytest.mark.parametrize(("oom_flag", "oom_elsewhere", "code", "reason"), [
    pytest.param(True, False, 137, "OOMKilled", id="engine-flag"),
    pytest.param(False, True, 137, "OOMKilled", id="oom-event-flag-missed"),
    pytest.param(False, False, 137, "exited with code 137", id="plain-sigkill"),
    pytest.param(False, False, 1, "exited with code 1", id="exit-1"),
])
def test_exit_reason_with_oom_known_elsewhere(oom_flag: bool, oom_elsewhere: bool, code: int, reason: str) -> None:
    info = ct.ContainerInfo(id="c1", name="n", labels={}, state="exited", exit_code=code, oom_killed=oom_flag)
    assert ct.exit_reason(info, oom_killed=oom_elsewhere) == reason


async def test_a_late_oom_event_wakes_the_waiting_exit() -> None:
    ooms = OomKills()
    waiting = asyncio.create_task(ooms.wait("c1", timeout_s=30))
    await eventually(lambda: "c1" in ooms._waiters, timeout=5, what="the exit waiting")
    ooms.note("c1")  # the 'oom' after the 'die'
    assert await asyncio.wait_for(waiting, 5) is True
    assert ooms._waiters == {}


async def test_no_oom_event_gives_up_after_the_deadline_and_memory_is_bounded() -> None:
    ooms = OomKills(max_count=2)
    assert await ooms.wait("c1", timeout_s=0.05) is False
    for cid in ("a", "b", "c"):
        ooms.note(cid)
    assert (ooms.seen("a"), ooms.seen("b"), ooms.seen("c")) == (False, True, True)
    assert await ooms.wait("c", timeout_s=0) is True  # already known: no wait


class OomThenDie:
    def __init__(self) -> None:
        self.calls = 0

    async def container_events(self, labels: dict[str, str], since: float):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeUnavailable("done")
        attrs = {"noops.instance": "hog-1"}
        yield {"Action": "oom", "Actor": {"ID": "c1", "Attributes": attrs}, "timeNano": 1_000_000_000}
        yield {"Action": "die", "Actor": {"ID": "c1", "Attributes": attrs}, "timeNano": 2_000_000_000}
        await asyncio.Event().wait()


class Recorder:
    owner = {"noops.cluster": "c1", "noops.host": "h1"}

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def on_oom(self, instance: str, container_id: str) -> None:
        self.seen.append(("oom", instance, container_id))

    async def on_die(self, instance: str, container_id: str) -> None:
        self.seen.append(("die", instance, container_id))


async def test_event_watch_hands_oom_and_die_to_the_agent_in_order() -> None:
    rec = Recorder()
    task = asyncio.create_task(events.watch_deaths(OomThenDie(), rec, since=0.0))  # type: ignore[arg-type]
    try:
        await eventually(lambda: len(rec.seen) == 2, timeout=5, what="both events handled")
        assert rec.seen == [("oom", "hog-1", "c1"), ("die", "hog-1", "c1")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
