"""A loopback TCP forwarder that can hold back the server's close, for tests of a connection
that has read the server's last words but not yet its end.

When PostgreSQL stops (or ``pg_terminate_backend``), each backend sends FATAL 57P01 and then
closes.  An idle asyncpg connection that has read the FATAL but not yet the close has no state
for an error outside a query: it parks in ERROR_CONSUME, and its next statement raises
``InternalClientError("cannot switch to state 12; another operation (2) is in progress")``
(asyncpg then aborts it).  Seen for ~0.2 s per connection when a cluster of ten busy backends
stopped; with one backend on a quiet machine the window is too short to hit reliably.  While
``hold`` is set, the forwarder passes every byte the server sends but keeps the client's side of
a connection the server closed open, until ``release()``: the same window, as long as a test
needs it.  The bytes are PostgreSQL's own; nothing is made up."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit


class HoldClose:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.hold = False
        self.server_closed = asyncio.Event()   # a server side ended while held
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def listen_port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def dsn(self, dsn: str) -> str:
        """``dsn`` through this forwarder."""
        u = urlsplit(dsn)
        return urlunsplit(u._replace(netloc=f"{u.netloc.rsplit('@', 1)[0]}@127.0.0.1:{self.listen_port}"))

    async def end_session(self, pool, pid: int) -> None:
        """End backend ``pid``'s session from ``pool`` (a connection not through here) with the
        close held, and return once its FATAL has been passed on."""
        self.hold = True
        self.server_closed.clear()
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.wait_for(self.server_closed.wait(), 10)

    def release(self) -> None:
        """Let the held closes through (and the ones to come)."""
        self.hold = False
        self._released.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_server: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if from_server and self.hold:
            self.server_closed.set()
            await self._released.wait()
        writer.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)
        self._writers |= {client_w, server_w}
        pipes = [asyncio.create_task(self._pipe(client_r, server_w, from_server=False)),
                 asyncio.create_task(self._pipe(server_r, client_w, from_server=True))]
        self._tasks.update(pipes)
        for p in pipes:
            p.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def hold_close(dsn: str) -> AsyncIterator[HoldClose]:
    """A forwarder to ``dsn``'s server (``proxy.dsn(dsn)`` goes through it)."""
    u = urlsplit(dsn)
    proxy = HoldClose(u.hostname or "127.0.0.1", u.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
