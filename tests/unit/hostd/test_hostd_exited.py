"""hostd tells a process that has exited (a zombie too) from a live one by its namespaces."""
import os

from services.hostd.lifecycle import _exited
from tests.support.wait import eventually


async def test_a_zombie_counts_as_exited_a_live_process_does_not() -> None:
    assert not _exited(os.getpid())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        # Not reaped yet: /proc/<pid> is still there, its namespaces are not.
        assert await eventually(lambda: _exited(pid), timeout=5, what="the child exited")
        assert os.path.exists(f"/proc/{pid}")
    finally:
        os.waitpid(pid, 0)
    assert _exited(pid)
