"""One scrape round against real sockets: an instance that answers, one that accepts and never
answers, one that refuses; the round ends within its timeout with only the one that answered."""
from __future__ import annotations

import asyncio
import socket
import time

from services.hostd import initstats

STATS = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\ncpu_seconds 1.5\nmemory_bytes 4096\nready 1\ncounter hits 3\n"


async def test_a_round_is_bounded_by_its_timeout() -> None:
    async def good(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(STATS)
        await writer.drain()
        writer.close()

    hung: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)   # accepts, reads, never answers

    servers = [await asyncio.start_server(good, "127.0.0.1", 0), await asyncio.start_server(silent, "127.0.0.1", 0)]
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    try:
        ports = [srv.sockets[0].getsockname()[1] for srv in servers]
        found = [initstats.Target("web-1", "web", "127.0.0.1", ports[0]),
                 initstats.Target("web-2", "web", "127.0.0.1", ports[1]),
                 initstats.Target("web-3", "web", "127.0.0.1", closed)]
        t0 = time.monotonic()
        got = await initstats.scrape(found, timeout_s=0.5, concurrency=3)
        took = time.monotonic() - t0
    finally:
        for w in hung:
            w.close()
        for srv in servers:
            srv.close()
            await srv.wait_closed()
    assert list(got) == ["web-1"]
    app, stats = got["web-1"]
    assert (app, stats.cpu_seconds, stats.memory_bytes, stats.ready, stats.counters) == ("web", 1.5, 4096, True,
                                                                                         (("hits", 3.0),))
    assert took < 1.5, f"the round took {took:.2f}s with a 0.5 s timeout"
