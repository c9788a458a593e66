"""One health-check loop per running instance that has checks (the I/O around health.py).

A loop runs each check when due, feeds the result to the pure core and tells the agent only
about *transitions* of the instance's verdict (unknown -> healthy, healthy -> unhealthy, ...) and
about a check past its failure limit.  The agent owns the per-instance lock and the reports;
a loop is stopped (cancelled) by the agent whenever its instance stops, dies or is replaced.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from libs.messages import HealthCheckSpec
from libs.supervise import cancel_within
from services.hostd import health, probes
from services.hostd.runtime import ContainerRuntime

log = logging.getLogger("noops.hostd.health")


@dataclass(frozen=True)
class Watch:
    instance: str
    container_id: str
    checks: tuple[HealthCheckSpec, ...]
    started_at: float      # wall-clock start of the container: the grace period counts from here


# (watch, new verdict) -> None, raising when the report could not be published (retried next round)
OnChange = Callable[[Watch, health.Verdict], Awaitable[None]]
# (watch, reason) -> None: kill the instance and report FAILED
OnKill = Callable[[Watch, str], Awaitable[None]]


class Monitors:
    def __init__(self, *, runtime: ContainerRuntime, ip_of: Callable[[str], str], clock: Callable[[], float],
                 on_change: OnChange, on_kill: OnKill, first_retry_s: float = 0.0) -> None:
        """``first_retry_s``: how soon a check failing while its app starts runs again (health.early_retry_s)."""
        self._rt = runtime
        self._first_retry_s = first_retry_s
        self._ip_of = ip_of
        self._clock = clock
        self._on_change = on_change
        self._on_kill = on_kill
        self._tasks: dict[str, tuple[Watch, asyncio.Task[None]]] = {}

    def watch(self, w: Watch) -> None:
        """Start checking (idempotent: the same container keeps its loop and what it knew)."""
        old = self._tasks.get(w.instance)
        if old is not None and old[0].container_id == w.container_id and not old[1].done():
            return
        self.forget(w.instance)
        if w.checks:
            task = asyncio.create_task(self._run(w), name=f"hostd-health-{w.instance}")
            self._tasks[w.instance] = (w, task)

    def forget(self, instance: str) -> None:
        """Stop checking; safe to call from the loop itself (it then ends on its own)."""
        got = self._tasks.pop(instance, None)
        if got is not None and got[1] is not asyncio.current_task():
            got[1].cancel()

    async def close(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        self._tasks.clear()
        await cancel_within(tasks, what="health checks")

    async def _run(self, w: Watch) -> None:
        states = [health.first(w.started_at) for _ in w.checks]
        told: bool | None = None
        while True:
            now = self._clock()
            due = [i for i, s in enumerate(states) if s.next_at <= now]
            if not due:
                await asyncio.sleep(min(s.next_at for s in states) - now)
                continue
            ip = self._ip_of(w.instance)
            results = await asyncio.gather(*(probes.probe(w.checks[i], ip=ip, container_id=w.container_id,
                                                          runtime=self._rt) for i in due))
            now = self._clock()
            for i, result in zip(due, results):
                states[i] = health.observe(w.checks[i], states[i], result, started_at=w.started_at, now=now,
                                           first_retry_s=self._first_retry_s)
            dead = next((i for i in due if health.doomed(w.checks[i], states[i])), None)
            if dead is not None:
                reason = health.kill_reason(w.checks[dead], states[dead])
                log.warning("health check failure limit reached; killing", extra={
                    "instance": w.instance, "container_id": w.container_id[:12], "reason": reason})
                if await self._try(self._on_kill(w, reason), w):
                    return
                continue  # not killed yet: the check stays past its limit, the next round tries again
            v = health.verdict(states)
            if v.healthy is not None and v.healthy != told:
                if await self._try(self._on_change(w, v), w):
                    told = v.healthy

    async def _try(self, step: Awaitable[None], w: Watch) -> bool:
        try:
            await step
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # NATS or the engine away: the next round tries again
            log.warning("health report failed; retrying next round", extra={
                "instance": w.instance, "error": str(exc) or type(exc).__name__})
            return False

