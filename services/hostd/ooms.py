"""Was a container killed by its memory limit?  Docker's own answer (State.OOMKilled) is not
always set on cgroup v1: the 'die' of the container may be handled by the engine before its
'oom', and the exit then records OOMKilled false.  The 'oom' *event* is still emitted, so hostd
remembers the ids it was told about; and, while the container's cgroup is still there, its
OOM-kill counter says so too.

Ordering: an exit by SIGKILL (code 137) whose 'oom' has not been seen yet waits for it a
bounded time (NOOPS_HOSTD_OOM_WAIT_S) before it is called "exited with code 137".
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

SIGKILL_EXIT = 128 + 9


def oom_kill_count(text: str) -> int:
    """The ``oom_kill`` counter of cgroup v1 ``memory.oom_control`` or v2 ``memory.events``."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def cgroup_files(container_id: str, root: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """Where the engine puts the container's memory counters (cgroupfs and systemd drivers)."""
    return [root / "memory" / "docker" / container_id / "memory.oom_control",                    # v1, cgroupfs
            root / "memory" / "system.slice" / f"docker-{container_id}.scope" / "memory.oom_control",  # v1, systemd
            root / "docker" / container_id / "memory.events",                                       # v2, cgroupfs
            root / "system.slice" / f"docker-{container_id}.scope" / "memory.events"]               # v2, systemd


def cgroup_oom_killed(container_id: str, root: Path = Path("/sys/fs/cgroup")) -> bool:
    """True when the container's cgroup is still there and counted an OOM kill (usually the
    runtime removes it with the container's exit; then this knows nothing)."""
    for path in cgroup_files(container_id, root):
        try:
            return oom_kill_count(path.read_text()) > 0
        except OSError:
            continue
    return False


class OomKills:
    """Container ids the engine reported 'oom' for, the newest ``max_count``; waiters woken."""

    def __init__(self, max_count: int = 4096) -> None:
        self._max_count = max_count
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, asyncio.Event] = {}

    def note(self, container_id: str) -> None:
        self._seen[container_id] = None
        self._seen.move_to_end(container_id)
        while len(self._seen) > self._max_count:
            self._seen.popitem(last=False)
        if (ev := self._waiters.get(container_id)) is not None:
            ev.set()

    def seen(self, container_id: str) -> bool:
        return container_id in self._seen

    async def wait(self, container_id: str, timeout_s: float) -> bool:
        """True as soon as an 'oom' for the container is (or was) noted; False after timeout_s."""
        if self.seen(container_id) or timeout_s <= 0:
            return self.seen(container_id)
        ev = self._waiters.setdefault(container_id, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.pop(container_id, None)
        return self.seen(container_id)
