"""The registry for bench.fanout_latency, as its own process: the service's own ``main`` (same
settings from the environment, same wiring: report consumer, outbox, announcer, fan-out, sink
runners, ops server), with two observers added that take the time of each report's commit and
of each sink application holding it.  Times are CLOCK_MONOTONIC, which every process on the
machine shares, so the generator's publish times and these subtract.

    python -m bench.fanout_registry --out DIR --expect N      (started by bench.fanout_latency)

Writes DIR/ready once every sink has made its first (full) application, and DIR/done.json
({instance: [commit, haproxy, nft]}) once N reports are in every sink; on SIGTERM before that,
what it has (the generator names the missing ones).
"""
from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import msgspec
from nats.aio.msg import Msg

from libs.service import run_service
from libs.settings import RegistrySettings, load
from services.registry import main as registry
from services.registry.sinks.model import Desired


class _Id(msgspec.Struct):
    """The one field of a report the clock needs (the rest is skipped, not decoded)."""
    instance: str


_ID = msgspec.json.Decoder(_Id)


class Clock:
    """Per report: when it was committed and when each sink held it (monotonic seconds)."""

    def __init__(self, out: Path, expect: int, sinks: list[str]) -> None:
        self.out, self.expect, self.sinks = out, expect, sinks
        self.names = ["commit", *sinks]
        self.done: dict[str, dict[str, float]] = defaultdict(dict)
        self.complete = 0
        self.applied: set[str] = set()
        self.held: dict[str, set[str]] = defaultdict(set)   # sink -> instances it held once
        self.written = False
        # The garbage collector's pauses (they stop the registry's one thread): generation -> durations.
        self.gc_pauses: dict[int, list[float]] = defaultdict(list)
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].append(time.perf_counter() - self._gc_start)

    def _taken(self, instance: str, what: str, at: float) -> None:
        times = self.done[instance]
        if what not in times:
            times[what] = at
            # Only this run's reports get a commit time: endpoints of earlier runs' apps, applied
            # in a full snapshot, never complete.
            if len(times) == len(self.names) and "commit" in times:
                self.complete += 1
                if self.complete == self.expect:
                    self.write()

    def committed(self, msgs: list[Msg]) -> None:
        at = time.monotonic()
        for m in msgs:
            try:
                self._taken(_ID.decode(m.data).instance, "commit", at)
            except msgspec.DecodeError:
                continue

    def observe(self, sink: str, work: Desired, at: float) -> None:
        if sink not in self.applied:
            self.applied.add(sink)
            if self.applied >= set(self.sinks):
                (self.out / "ready").write_text(str(os.getpid()))
        # Each application carries the app's whole set: only the instances this sink has not held
        # yet are looked at (the observer runs in the registry's own loop, so its cost is the
        # registry's latency).
        held = self.held[sink]
        for state in work.values():
            for e in state.endpoints:
                if e.instance not in held:
                    held.add(e.instance)
                    self._taken(e.instance, sink, at)

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        rows = {i: [t.get(k) for k in self.names] for i, t in self.done.items() if "commit" in t}
        tmp = self.out / "done.json.new"
        gcs = {g: {"n": len(v), "total_ms": round(sum(v) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}
               for g, v in sorted(self.gc_pauses.items())}
        objs = gc.get_objects()
        kinds: dict[str, int] = defaultdict(int)
        for o in objs:
            kinds[type(o).__name__] += 1
        gcs["tracked"] = {"all": len(objs), **dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])}
        del objs
        tmp.write_text(json.dumps({"names": self.names, "complete": self.complete, "times": rows, "gc": gcs}))
        os.replace(tmp, self.out / "done.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--expect", required=True, type=int)
    args = p.parse_args()
    settings = load(RegistrySettings)
    clock = Clock(args.out, args.expect, settings.sink_names())
    atexit.register(clock.write)   # stopped before every report arrived: what there is
    run_service("registry", lambda: settings,
                lambda s: registry.main(s, observers=(clock.observe,), committed=clock.committed))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
