"""Wait for a condition with a deadline: the only way tests wait."""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(cond: Callable[[], Any | Awaitable[Any]], *, timeout: float = 30.0,
                     interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``cond`` (sync or async) until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = cond()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        await asyncio.sleep(interval)


async def holds(cond: Callable[[], Any | Awaitable[Any]], *, seconds: float, interval: float = 0.2,
                what: str = "condition") -> None:
    """Check ``cond`` (sync or async) throughout ``seconds``: fail at the first falsy answer.  For
    faults that last a set time (an outage of 5 s), checking what must hold meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        got = cond()
        if inspect.isawaitable(got):
            got = await got
        if not got:
            raise AssertionError(f"{what} stopped holding after {seconds - (deadline - time.monotonic()):.1f}s: {got!r}")
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(interval)
