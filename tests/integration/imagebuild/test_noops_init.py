"""noops-init as a real process on this machine (not PID 1 here: it makes itself a subreaper):
exit code and reason, SIGTERM then SIGKILL after the stop timeout, other signals forwarded,
orphans reaped, cron runs logged, stats and readiness over HTTP."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from imagebuild import initbin
from tests.support.wait import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return initbin.write_init(tmp_path_factory.mktemp("init") / "noops-init")


@dataclass
class Init:
    proc: asyncio.subprocess.Process
    port: int
    out: Path

    async def stats(self, path: str = "/stats") -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return await client.get(f"http://127.0.0.1:{self.port}{path}")
        except httpx.HTTPError:
            return None

    def log(self) -> str:
        return self.out.read_text()

    async def ended(self, timeout: float = 10) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)


@pytest_asyncio.fixture
async def start(binary: Path, tmp_path: Path) -> AsyncIterator:
    started: list[Init] = []

    async def run(*cmd: str, **env: str) -> Init:
        port = free_port()
        out = tmp_path / f"log{len(started)}"
        proc = await asyncio.create_subprocess_exec(
            str(binary), "--", *cmd, stdout=out.open("wb"), stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "NOOPS_INIT_STATS_PORT": str(port),
                 "NOOPS_INIT_CRONTAB": str(tmp_path / "crontab"), "NOOPS_INIT_COUNTERS": str(tmp_path / "counters"),
                 **env})
        started.append(init := Init(proc, port, out))
        return init

    yield run
    for init in started:   # whatever a test left running, and the app under it
        if init.proc.returncode is None:
            # A killed init leaves its app to PID 1 (an http.server of the readiness test
            # outlived every session): its descendants are found first, then all get SIGKILL.
            below, todo = [], [init.proc.pid]
            while todo:
                kids = [pid for pid, _, _ in children_of(todo.pop())]
                below += kids
                todo += kids
            init.proc.kill()
            await init.proc.wait()
            for pid in below:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_exit_code_and_reason(start) -> None:  # type: ignore[no-untyped-def]
    init = await start("sh", "-c", "sleep 0.2; exit 3")
    assert await init.ended() == 3
    assert init.log().splitlines()[-1].startswith("noops-init: exited with code 3 after 0.")


async def test_sigterm_then_sigkill_after_the_stop_timeout(start) -> None:  # type: ignore[no-untyped-def]
    init = await start("sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done", NOOPS_INIT_STOP_TIMEOUT_S="0.5")
    await eventually(lambda: "up" in init.log(), timeout=5, what="the app up")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    init.proc.send_signal(signal.SIGTERM)
    assert await init.ended() == 128 + signal.SIGKILL
    assert 0.4 < loop.time() - t0 < 3
    assert init.log().splitlines()[-1].endswith("(the stop timeout of 0.5 s passed)")


async def test_a_terminated_app_stops_at_once(start) -> None:  # type: ignore[no-untyped-def]
    init = await start(sys.executable, "-c", "import signal; print('up', flush=True); signal.pause()")
    await eventually(lambda: "up" in init.log(), timeout=5, what="the app up")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    init.proc.send_signal(signal.SIGTERM)
    assert await init.ended() == 128 + signal.SIGTERM
    assert loop.time() - t0 < 1
    assert "killed by signal 15" in init.log().splitlines()[-1]


async def test_other_signals_are_forwarded(start) -> None:  # type: ignore[no-untyped-def]
    init = await start("sh", "-c", "trap 'echo got-hup' HUP; echo up; while :; do sleep 0.1; done")
    await eventually(lambda: "up" in init.log(), timeout=5, what="the app up")
    init.proc.send_signal(signal.SIGHUP)
    await eventually(lambda: "got-hup" in init.log(), timeout=5, what="the HUP reaching the app")
    assert init.proc.returncode is None


def children_of(pid: int) -> list[tuple[int, str, bytes]]:
    """(pid, state, argv[0]) of every process whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            argv0 = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0], argv0))
    return found


async def test_orphans_are_reaped(start) -> None:  # type: ignore[no-untyped-def]
    # The subshells exit at once, so their sleeps are orphans: noops-init (a subreaper) inherits them.
    init = await start("sh", "-c", "for i in 1 2 3; do (sleep 0.5 &); done; sleep 30")
    await eventually(lambda: [c for c in children_of(init.proc.pid) if c[2] == b"sleep"], timeout=5,
                     what="the orphans adopted by noops-init")
    # The app itself (sh) stays; the orphans end and must not stay behind as zombies.
    await eventually(lambda: [c[2] for c in children_of(init.proc.pid)] == [b"sh"], timeout=5,
                     what=f"only the app left: {children_of(init.proc.pid)}")


async def test_cron_stats_and_readiness(start, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app_port = free_port()
    (tmp_path / "crontab").write_text(f"@every 1s echo tick >> {tmp_path}/ticks\n@reboot exit 4\n")
    (tmp_path / "counters").write_text("requests 7\nbad line here\n")
    # The app listens only once the test says so (a FIFO it blocks on), so "not ready" comes first.
    gate = tmp_path / "go"
    os.mkfifo(gate)
    init = await start(sys.executable, "-c", f"import http.server; open({str(gate)!r}).read(); "
                       f"http.server.HTTPServer(('127.0.0.1', {app_port}), http.server.BaseHTTPRequestHandler)"
                       ".serve_forever()", NOOPS_INIT_READY_PORTS=str(app_port))
    first = await eventually(init.stats, timeout=5, what="the stats port")
    assert first.status_code == 200
    ready = await init.stats("/ready")
    if ready is not None and ready.status_code == 503:   # before the app listens
        assert ready.text == f"not ready: port {app_port} is not listening\n"
    await asyncio.to_thread(gate.write_text, "go")       # blocks until the app has the FIFO open
    await eventually(lambda: _status(init, "/ready", 200), timeout=10, what="ready once the app listens")
    body = (await init.stats()).text   # type: ignore[union-attr]
    lines = dict(line.split(" ", 1) for line in body.splitlines())
    assert float(lines["cpu_seconds"]) > 0 and int(lines["memory_bytes"]) > 1_000_000
    assert lines["ready"] == "1" and lines["counter"] == "requests 7"
    await eventually(lambda: (tmp_path / "ticks").exists() and (tmp_path / "ticks").read_text().count("tick") >= 2,
                     timeout=10, what="two runs of the @every job")
    assert "noops-init: cron `exit 4` exited with code 4 after" in init.log()
    assert (await init.stats("/nothing")).status_code == 404   # type: ignore[union-attr]


async def _status(init: Init, path: str, code: int) -> bool:
    r = await init.stats(path)
    return r is not None and r.status_code == code
