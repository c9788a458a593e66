"""Supervised loops: every long-running loop of a service either restarts with the retry policy's
backoff (logged, counted in noops_loop_restarts_total{loop}) or, when it must not be restarted,
ends the service with its error.  Each loop's liveness is shown on /healthz (libs/service.Health).

    Supervisor.start(name, factory) --> task: run factory() --crash--> log + count + backoff --> again
                                                        \\--escalate (e.g. placer's Deposed)--> re-raised
    Supervisor.wait() --> the first supervised task that ends: its error re-raised, the others cancelled

A loop that returns by itself is over (state ``stopped``): long-running loops do not return,
so /healthz reports it like a dead one.  A loop that ran longer than the policy's cap before it
crashed starts its backoff over: one crash a day is not the tenth in a row.
"""
from __future__ import annotations

import asyncio
import logging
import time
import io
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Counter

from libs import retry

log = logging.getLogger("noops.supervise")

RESTARTS = Counter("noops_loop_restarts_total", "Restarts of a service's long-running loop after it crashed", ["loop"])


@dataclass
class LoopState:
    """One loop as /healthz shows it."""
    state: str = "running"         # running, restarting, dead, stopped
    restarts: int = 0
    last_error: str = ""
    last_error_at: float = 0.0     # wall clock, for humans

    @property
    def alive(self) -> bool:
        return self.state in ("running", "restarting")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state, "restarts": self.restarts}
        if self.last_error:
            out.update(last_error=self.last_error, last_error_at=round(self.last_error_at, 3))
        return out


class Loops:
    """The loops of one process, by name (held by Health)."""

    def __init__(self) -> None:
        self.states: dict[str, LoopState] = {}

    def get(self, name: str) -> LoopState:
        return self.states.setdefault(name, LoopState())

    @property
    def all_alive(self) -> bool:
        return all(s.alive for s in self.states.values())

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {name: s.as_dict() for name, s in sorted(self.states.items())}


class Supervisor:
    def __init__(self, loops: Loops, policy: retry.Policy = retry.DEFAULT, *,
                 escalate: tuple[type[BaseException], ...] = (), clock: Callable[[], float] = time.time) -> None:
        """``escalate``: exceptions that end the supervised task instead of restarting it (the
        placer's loss of leadership must reach the code that steps down)."""
        self.loops, self.policy, self.escalate, self.clock = loops, policy, escalate, clock
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, factory: Callable[[], Awaitable[object]], *, restart: bool = True) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision; ``restart=False``: a crash ends the service."""
        task = asyncio.create_task(self._run(name, factory, restart), name=name)
        self.tasks.append(task)
        return task

    async def _run(self, name: str, factory: Callable[[], Awaitable[object]], restart: bool) -> None:
        state = self.loops.get(name)
        loop = asyncio.get_running_loop()
        failures = retry.Failures(self.policy)
        while True:
            state.state = "running"
            started = loop.time()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except self.escalate:
                state.state = "stopped"
                raise
            except Exception as exc:
                state.last_error, state.last_error_at = retry.describe(exc), self.clock()
                if not restart:
                    state.state = "dead"
                    log.error("loop crashed; the service stops", exc_info=exc, extra={"loop": name})
                    raise
                if loop.time() - started > self.policy.cap_s:
                    failures.ok()
                delay = failures.failed()
                state.state, state.restarts = "restarting", state.restarts + 1
                RESTARTS.labels(name).inc()
                log.error("loop crashed; restarting", exc_info=exc, extra={
                    "loop": name, "restarts": state.restarts, "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)
                continue
            state.state = "stopped"
            log.info("loop ended", extra={"loop": name})
            return

    async def wait(self) -> None:
        """Until the first supervised task ends: re-raise its error (a loop that must not restart,
        an escalated exception) and cancel the others.  A loop that ended without error ends the
        wait too: the caller decides whether that is a shutdown."""
        try:
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        await cancel_within(self.tasks, what="supervised loops")


# How long a cancelled task may take to end before it is reported as stuck.  Cancelled loops end
# at their next await; one that does not (a blocked thread under it, a swallowed cancellation) is
# a bug, and a shutdown that hangs on it forever is worse than one that names it and goes on.
CANCEL_WITHIN_S = 15.0


async def cancel_within(tasks: Iterable[asyncio.Task[object]], *, what: str,
                        timeout_s: float = CANCEL_WITHIN_S) -> list[asyncio.Task[object]]:
    """Cancel ``tasks`` and wait for them to end, at most ``timeout_s``.  Returns the ones still
    running then, after logging each with its stack (so a hang is a log line, not a mystery)."""
    tasks = [t for t in tasks if not t.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        return []
    _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
    for task in stuck:
        log.error("task did not end after cancel", extra={"what": what, "task": task.get_name(),
                                                          "timeout_s": timeout_s, "stack": task_stack(task)})
    return list(stuck)


def task_stack(task: asyncio.Task[object]) -> str:
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()
