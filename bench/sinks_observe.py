"""Benchmark: time to answer noops.sinks.observe (the reconciler's read-back of the sinks).

Real parts: NATS, a real HAProxy (master-worker, Runtime API) holding ``--apps`` backends of
``--per-app`` servers each, and a real nftables table of its own with one set per app holding the
same addresses (made up, in 198.18.0.0/15; no health checks, no traffic).  The registry's
responders (services/registry/sinkwatch.py) run in this process; a second connection sends the
requests.  Reported: per-sink ``observe()`` and the whole NATS round trip, median and p95, and the
answer's size (NATS refuses payloads over its max_payload, 1 MiB by default).

    .venv/bin/python -m bench.sinks_observe [--apps 100] [--per-app 20] [--rounds 50]

Starts its own NATS server, HAProxy and nft table; removes them at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from devtools import infra
from devtools import sinks as sink_procs
from libs import bus, messages, subjects
from libs.messages import Endpoint
from services.registry.sinks.haproxy import HAProxyOptions, HAProxySink
from services.registry.sinks.model import AppState, LbPort
from services.registry.sinks.nft import NftSink
from services.registry.sinks.runner import SinkRunner
from services.registry.sinkwatch import SinkWatch


def desired(n_apps: int, per_app: int, lo: int) -> dict[str, AppState]:
    out = {}
    for a in range(n_apps):
        app = f"app{a:03d}"
        eps = tuple(Endpoint(instance=f"{app}-{k:04d}", host="h1", ip=f"198.18.{a}.{k + 1}", ports={"http": 8080})
                    for k in range(per_app))
        out[app] = AppState(app, eps, {"http": LbPort("127.0.0.1", lo + a)})
    return out


def stats(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"median_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


async def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def main_async(n_apps: int, per_app: int, rounds: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-observe-"))
    (run_dir / "logs").mkdir()
    table = f"noops_bench_{tag}"
    nport, mport = infra.free_ports(2)
    lo = 30000                     # below the ephemeral range, clear of cluster ranges
    try:
        infra.start_nats(run_dir, port=nport, monitor_port=mport)
        paths = sink_procs.start_haproxy(run_dir)
        haproxy = HAProxySink(HAProxyOptions(paths=paths, port_range=(lo, lo + n_apps + 10), spare=2,
                                             check_interval_s=0))
        nft = NftSink(table)
        want = desired(n_apps, per_app, lo)
        await haproxy.apply_full(want)
        await nft.apply_full(want)
        watch = SinkWatch([SinkRunner(haproxy), SinkRunner(nft)], None)
        registry = await bus.connect(f"nats://127.0.0.1:{nport}", "bench-registry")
        reconciler = await bus.connect(f"nats://127.0.0.1:{nport}", "bench-reconciler")
        try:
            await watch.serve(registry)
            answer = await reconciler.request(subjects.SINKS_OBSERVE, b"", timeout=10)
            views = {v.sink: v for v in messages.decode(answer.data, messages.SinksObserved).sinks}
            assert all(v.ok for v in views.values()), views
            held = {k: sum(map(len, v.groups.values())) for k, v in views.items()}

            async def ask() -> None:
                await reconciler.request(subjects.SINKS_OBSERVE, b"", timeout=10)
            result = {"apps": n_apps, "per_app": per_app, "held": held, "answer_bytes": len(answer.data),
                      "haproxy_observe": stats(await timed(haproxy.observe, rounds)),
                      "nft_observe": stats(await timed(nft.observe, rounds)),
                      "nats_round_trip": stats(await timed(ask, rounds))}
        finally:
            await reconciler.close()
            await registry.close()
            await nft.close()
    finally:
        sink_procs.stop_haproxy(run_dir)
        infra.stop_pidfile(run_dir / "nats.pid")
        sink_procs.delete_nft_table(table)
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--per-app", type=int, default=20)
    p.add_argument("--rounds", type=int, default=50)
    args = p.parse_args()
    print(json.dumps(asyncio.run(main_async(args.apps, args.per_app, args.rounds))), flush=True)


if __name__ == "__main__":
    main()
