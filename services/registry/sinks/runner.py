"""One sink in its own task with its own queue: a slow or failing sink never blocks the others.

Keys, not events: the queue holds the newest state per app (a later state for the same app
replaces an earlier one), plus at most one full snapshot.  A failure keeps the work, counts it,
and retries after an exponential backoff (``base * 2**n``, capped) -- never a hot loop.  Metrics
are labelled by sink name.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

from libs import retry

from services.registry.sinks.base import Sink
from services.registry.sinks.model import AppState, Desired

log = logging.getLogger("noops.registry.sinks")

LAG = Histogram("noops_registry_sink_lag_seconds", "From reading the task log to the sink holding it",
                ["sink"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
STEPS = Histogram("noops_registry_sink_step_seconds", "One application to the sink (a batch of apps or a full set)",
                  ["sink"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
FAILURES = Counter("noops_registry_sink_failures_total", "Failed sink applications (retried with backoff)", ["sink"])
PENDING = Gauge("noops_registry_sink_pending_apps", "Apps waiting to be applied to the sink", ["sink"])
UP = Gauge("noops_registry_sink_up", "1 when the sink's last application succeeded", ["sink"])
LAST_OK = Gauge("noops_registry_sink_last_success_timestamp_seconds", "Unix time of the last success", ["sink"])

Observer = Callable[[str, Desired, float], None]   # (sink name, what was applied, monotonic time)



class SinkRunner:
    def __init__(self, sink: Sink, *, backoff: retry.Policy = retry.Policy(base_s=0.1, cap_s=10.0), clock: Callable[[], float] = time.monotonic,
                 observers: tuple[Observer, ...] = ()) -> None:
        self.sink, self.backoff, self.clock, self.observers = sink, backoff, clock, observers
        self.name = sink.name
        self._pending: dict[str, AppState] = {}
        self._full: dict[str, AppState] | None = None
        self._forget: set[str] = set()   # apps whose sink-side cache goes before the next step
        self._wake = asyncio.Event()
        self.failures = 0
        # The metric children, looked up once (a lookup per app per step added up under load).
        self._lag, self._pending_gauge = LAG.labels(self.name), PENDING.labels(self.name)
        self._step = STEPS.labels(self.name)
        UP.labels(self.name).set(0)

    # ------------------------------------------------------------------ feeding (never blocks)
    def submit(self, changes: Desired) -> None:
        for app, state in changes.items():
            old = self._pending.get(app)
            if old is None or old.read_at <= state.read_at:
                self._pending[app] = state
        self._pending_gauge.set(len(self._pending))
        self._wake.set()

    def submit_repair(self, changes: Desired) -> None:
        """Like ``submit``, but the sink first forgets what it believes it holds for these apps
        (``Sink.forget``), in this runner's task just before the next application, so a repair
        never races an application in flight."""
        self._forget.update(changes)
        self.submit(changes)

    def submit_full(self, snapshot: Desired) -> None:
        at = max((s.read_at for s in snapshot.values()), default=self.clock())
        self._full = dict(snapshot)
        # Changes read before the snapshot are contained in it.
        self._pending = {a: s for a, s in self._pending.items() if s.read_at > at}
        self._pending_gauge.set(len(self._pending))
        self._wake.set()

    @property
    def idle(self) -> bool:
        return self._full is None and not self._pending

    # ------------------------------------------------------------------ applying
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self.idle:
                await self.step()

    async def step(self) -> bool:
        """Apply what is queued once; on failure put it back and sleep the backoff. True on success."""
        full, self._full = self._full, None
        if self._forget:
            forget, self._forget = self._forget, set()
            self.sink.forget(sorted(forget))
        if full is not None:
            work: Desired = full          # changes queued meanwhile are newer: they follow next step
        else:
            work, self._pending = self._pending, {}
        t0 = time.perf_counter()
        try:
            if full is not None:
                await self.sink.apply_full(work)
            else:
                await self.sink.update(work)
        except Exception as exc:  # a sink's trouble stays with the sink
            self.failures += 1
            FAILURES.labels(self.name).inc()
            UP.labels(self.name).set(0)
            if full is not None:
                if self._full is None:
                    self._full = full
            else:
                self._pending = {**work, **self._pending}   # what arrived meanwhile is newer
            self._pending_gauge.set(len(self._pending))
            delay = self.backoff.backoff(self.failures)  # the one retry policy (libs/retry.py)
            log.warning("sink failed; will retry", extra={"sink": self.name, "error": str(exc) or type(exc).__name__,
                                                          "failures": self.failures, "retry_in_s": delay})
            await asyncio.sleep(delay)
            return False
        now = self.clock()
        self._step.observe(time.perf_counter() - t0)
        for s in work.values():
            self._lag.observe(max(now - s.read_at, 0.0))
        if self.failures:
            log.info("sink recovered", extra={"sink": self.name, "after_failures": self.failures})
        self.failures = 0
        UP.labels(self.name).set(1)
        LAST_OK.labels(self.name).set(time.time())
        self._pending_gauge.set(len(self._pending))
        for obs in self.observers:
            try:
                obs(self.name, work, now)
            except Exception:   # an observer (benchmark, test) must not stop the sink
                log.exception("sink observer failed", extra={"sink": self.name})
        return True
