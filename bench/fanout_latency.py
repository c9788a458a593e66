"""Benchmark: latency from a hostd's IP report to every sink updated, at a given report rate.

Real parts: NATS (JetStream), PostgreSQL (the task log), the registry's report handler and
outbox in this process, a real HAProxy (master-worker, Runtime API) and real nftables (a table
of its own).  Generated reports stand in for hostd: instances are inserted PENDING, then one
RUNNING report per instance is published at the target rate.  No traffic is sent to the
(made-up, 198.18.0.0/15) addresses: HAProxy has no health checks and no request is proxied.

Per report three times are taken: the registry committed it (from then on the Prometheus
discovery endpoint, which reads the task log, lists it: the monitoring "sink"), HAProxy holds
the server, the nft set holds the address.  "all" is the latest of the three.

    .venv/bin/python -m bench.fanout_latency [--rates 100,1000] [--seconds 5] [--apps 200]

Starts its own NATS server, database, HAProxy and nft table; removes them at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
from nats.aio.msg import Msg

from bench import unwind_on_sigterm
from devtools import infra
from devtools import sinks as sink_procs
from libs import bus, db, messages, outbox, subjects
from services.registry.announcer import Announcer
from services.registry.main import REPORT_BATCH, REPORT_BATCHES_IN_FLIGHT
from services.registry.records import Records
from services.registry.sinks.fanout import Fanout
from services.registry.sinks.haproxy import HAProxyOptions, HAProxySink
from services.registry.sinks.model import Desired
from services.registry.sinks.nft import NftSink
from libs import retry
from services.registry.sinks.runner import SinkRunner

HOSTS = ("h1", "h2", "h3", "h4")
# Report addresses count up from here, inside 198.18.0.0/15 (room for 75,000 reports).
FIRST_ADDRESS = ipaddress.ip_address("198.18.200.1")


async def setup_rows(pool, apps: list[str], per_app: int) -> list[tuple[str, str, str]]:
    """(instance, app, host) rows, PENDING, epoch 1."""
    out = []
    spec = {"ports": [{"name": "http", "container_port": 8080}]}
    for a in apps:
        await pool.execute("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, $3)",
                           a, json.dumps({"id": a, **spec}), per_app)
        await pool.execute("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)",
                           a, json.dumps({"id": a, **spec}))
    for a in apps:
        for k in range(per_app):
            out.append((f"{a}-{k:05d}", a, HOSTS[k % len(HOSTS)]))
    await pool.executemany("INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state) "
                           "VALUES ($1, $2, 1, $3, 1, 0.01, 1, 'STARTING')", out)
    return out


async def run_rate(pool, nc, js, paths, table: str, port_range, rate: int, seconds: float, n_apps: int,
                   tag: str) -> dict:
    apps = [f"b{tag}-r{rate}-a{i}" for i in range(n_apps)]
    n = int(rate * seconds)
    rows = await setup_rows(pool, apps, (n + n_apps - 1) // n_apps)
    rows = rows[:n]
    published: dict[str, float] = {}
    done: dict[str, dict[str, float]] = defaultdict(dict)   # instance -> sink -> time
    # Counted as they complete (all three times taken), not by scanning every report: a scan of
    # 15,000 rows every few ms took a third of this process and delayed what it measures.
    complete = [0]
    all_complete = asyncio.Event()

    def taken(instance: str, sink: str, at: float) -> None:
        times = done[instance]
        if sink not in times:
            times[sink] = at
            if len(times) == 3:
                complete[0] += 1
                if complete[0] == n:
                    all_complete.set()

    def observe(sink: str, work: Desired, at: float) -> None:
        for state in work.values():
            for e in state.endpoints:
                taken(e.instance, sink, at)

    # No health checks (check_interval_s 0): the addresses are made up, and 25,000 servers checked
    # every second would send SYNs nowhere and measure HAProxy's checks, not the fan-out.
    hap = HAProxySink(HAProxyOptions(paths=paths, port_range=port_range, spare=0, check_interval_s=0))
    runners = [SinkRunner(s, backoff=retry.Policy(base_s=0.05, cap_s=1.0), observers=(observe,))
               for s in (hap, NftSink(table))]
    relay = outbox.Relay(pool, js)
    announcer = Announcer(pool, relay)
    records = Records(pool, db.Queries("registry"), relay, announcer)
    fanout = Fanout(pool, db.Queries("registry"), runners, lb_bind_host="127.0.0.1", lb_port_range=port_range,
                    resync_s=3600)

    async def committed(msgs: list[Msg]) -> list[bus.Verdict]:
        verdicts = await records.handle_batch(msgs)
        at = time.monotonic()
        for m in msgs:
            taken(messages.decode(m.data, messages.IpReport).instance, "commit", at)
        return verdicts

    consumer = subjects.Consumer(subjects.REPORTS, f"bench{tag}r{rate}", f"{subjects.ROOT}.report.*")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(fanout.run()), *(asyncio.create_task(r.run()) for r in runners),
             asyncio.create_task(relay.run()), asyncio.create_task(announcer.run()),
             asyncio.create_task(bus.pull_loop(js, consumer, fanout.feeding(committed), stop=stop,
                                               batch=REPORT_BATCH, concurrency=REPORT_BATCHES_IN_FLIGHT))]
    try:
        # Frontends for every app exist before the clock starts (one reload), as in steady state.
        await asyncio.wait_for(_until(lambda: all(r.idle for r in runners) and hap.reloads >= 1), 60)
        t0 = time.monotonic()
        for i, (iid, app, host) in enumerate(rows):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            rep = messages.IpReport(instance=iid, app=app, host=host, epoch=1, state="RUNNING",
                                    container_id=f"c{i}", ip=str(FIRST_ADDRESS + i), at=time.time())
            published[iid] = time.monotonic()
            await nc.publish(subjects.report(host), messages.encode(rep))
        sent_s = time.monotonic() - t0
        try:
            await asyncio.wait_for(all_complete.wait(), 180)
        except asyncio.TimeoutError:
            missing = defaultdict(list)
            for iid, _, _ in rows:
                for sink in ("commit", "haproxy", "nft"):
                    if sink not in done[iid]:
                        missing[sink].append(iid)
            raise TimeoutError(f"{n - complete[0]} of {n} reports not in every sink after 180 s: "
                               + "; ".join(f"{k}: {len(v)} (e.g. {v[:3]})" for k, v in missing.items())) from None
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            await js.delete_consumer(subjects.REPORTS.name, consumer.durable)
    lat = {k: np.array([(done[i][k] - published[i]) * 1000 for i, _, _ in rows]) for k in ("commit", "haproxy", "nft")}
    lat["all"] = np.maximum.reduce([lat["commit"], lat["haproxy"], lat["nft"]])
    # What the fan-out adds after the registry committed (the part this code owns).
    lat["fanout"] = np.maximum(lat["haproxy"], lat["nft"]) - lat["commit"]
    return {"rate": rate, "reports": n, "achieved_rate": round(n / sent_s, 1), "haproxy_reloads": hap.reloads,
            **{f"{k}_p50_ms": round(float(np.percentile(v, 50)), 2) for k, v in lat.items()},
            **{f"{k}_p99_ms": round(float(np.percentile(v, 99)), 2) for k, v in lat.items()}}


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.005)


async def main_async(rates: list[int], seconds: float, n_apps: int) -> list[dict]:
    tag = uuid.uuid4().hex[:6]
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-fanout-"))
    (run_dir / "logs").mkdir()
    db_name = f"noops_bench_{tag}"
    table = f"noops_bench_{tag}"
    nport, mport = infra.free_port(), infra.free_port()
    infra.ensure_postgres()
    dsn = infra.ensure_database(db_name, fresh=True)
    results = []
    try:
        infra.start_nats(run_dir, port=nport, monitor_port=mport)
        paths = sink_procs.start_haproxy(run_dir)
        pool = await db.connect(dsn, max_size=10)
        await db.migrate(pool)
        nc = await bus.connect(f"nats://127.0.0.1:{nport}", "bench")
        js = nc.jetstream()
        await bus.ensure_streams(js)
        try:
            for k, rate in enumerate(rates):
                lo = 30000 + 1000 * (k % 2)          # below the ephemeral range, clear of cluster ranges
                results.append(await run_rate(pool, nc, js, paths, table, (lo, lo + 999), rate, seconds, n_apps, tag))
                print(json.dumps(results[-1]), flush=True)
        finally:
            await nc.close()
            await pool.close()
    finally:
        sink_procs.stop_haproxy(run_dir)
        infra.stop_pidfile(run_dir / "nats.pid")
        sink_procs.delete_nft_table(table)
        infra.drop_database(db_name)
        shutil.rmtree(run_dir, ignore_errors=True)   # NATS store, logs, sockets
    return results


def main() -> None:
    unwind_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="100,1000")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--apps", type=int, default=200)
    args = p.parse_args()
    asyncio.run(main_async([int(r) for r in args.rates.split(",")], args.seconds, args.apps))


if __name__ == "__main__":
    main()
