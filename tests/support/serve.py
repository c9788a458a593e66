"""An ASGI app served over a real socket in this process (uvicorn), for clients that need one:
Prometheus, and the SSE stream read line by line."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from devtools import infra
from tests.support.wait import eventually


@contextlib.asynccontextmanager
async def serving(app, *, port: int | None = None) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """Yields the base URL; the server is stopped on exit, even after a failure."""
    port = port or infra.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10, what="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
