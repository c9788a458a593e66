"""Real HAProxy (master-worker) in the test's own directory, and tiny TCP backends that answer
with their own name, so a test sees which server a request reached."""
from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devtools import sinks as sink_procs
from devtools.infra import port_open
from libs import subjects
from services.registry.sinks.haproxy import HAProxyOptions, HAProxySink
from services.registry.sinks.haproxy_config import Paths
from tests.integration.registry.taskrows import TaskRows


@pytest_asyncio.fixture
async def rows(pool) -> AsyncIterator[TaskRows]:  # type: ignore[no-untyped-def]
    """Task-log rows a test writes (apps, hosts, instances), removed at teardown even on failure,
    with the endpoints marks and announcements (outbox rows) of their apps."""
    t = TaskRows(pool)
    try:
        yield t
    finally:
        await pool.execute("DELETE FROM endpoints_changed WHERE app = ANY($1)", t.apps)
        await pool.execute("DELETE FROM outbox WHERE subject = ANY($1)",
                           [*(subjects.endpoints(a) for a in t.apps), *(subjects.deploy(a) for a in t.apps)])
        await t.cleanup()


def free_block(n: int) -> tuple[int, int]:
    """n consecutive free ports in 30000-32699: below the ephemeral range, away from the ranges
    clusters use (18000-18999, 20000-29999)."""
    for _ in range(50):
        base = random.randrange(30000, 32700 - n)
        if not any(port_open(p) for p in range(base, base + n)):
            return base, base + n - 1
    raise RuntimeError("no free port block")


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Paths]:
    (tmp_path / "logs").mkdir()
    paths = sink_procs.start_haproxy(tmp_path)
    try:
        yield paths
    finally:
        sink_procs.stop_haproxy(tmp_path)


@pytest.fixture
def port_range() -> tuple[int, int]:
    return free_block(12)


@pytest.fixture
def make_sink(haproxy: Paths, port_range: tuple[int, int]):
    def make(spare: int = 2, drain_timeout_s: float = 5.0) -> HAProxySink:
        return HAProxySink(HAProxyOptions(paths=haproxy, port_range=port_range, spare=spare,
                                          drain_timeout_s=drain_timeout_s, reload_timeout_s=10.0))
    return make


class Backend:
    """An HTTP/1.0 server answering its name; ``delay_s`` holds each answer (in-flight tests)."""

    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        self.name, self.delay_s, self.hits = name, delay_s, 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            body = self.name.encode()
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server:
            self.server.close()


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    made: list[Backend] = []
    yield made
    for b in made:
        await b.stop()


async def get(port: int, *, timeout: float = 5.0) -> tuple[int, str]:
    """One HTTP request through the frontend: (status, body); (0, error) when refused/reset."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return 0, type(exc).__name__
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), body.decode()
    except (IndexError, ValueError):
        return 0, data.decode(errors="replace")


def sock_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
