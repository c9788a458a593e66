"""Benchmark (b): end to end through NATS and the task log, with hollow hosts (bench/hollow.py,
a simulator) standing in for hostd, so the placer, registry, outbox and PostgreSQL are measured.

1,000 apps (mixed sizes; some with UNIQUE, GROUP_BY, MAX_PER) totalling 100,000 instances are
POSTed to the gateway (``POST /v1/apps/bulk``, 100 apps per request; ``--bulk 0``: one POST each); the clock runs until the task log holds every instance RUNNING (placed,
published, "started" by its hollow host, reported, verified and recorded by the registry).

    .venv/bin/python -m bench.placer_e2e [--hosts 10000] [--apps 1000] [--instances 100000] [--bulk 100]

Starts its own NATS server, database, gateway, placer and registry; stops them at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.hollow import ADDRESSES, HollowHosts
from bench.placer_core import make_apps
from bench import unwind_on_sigterm
from devtools import infra
from devtools.cluster import ClusterConfig, ensure_tokens, start_process, wait_healthy
from libs import bus, db


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (and their waited-for children), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15])   # utime stime cutime cstime
    return total / tick


def postgres_pids(db_name: str | None = None) -> list[int]:
    """PostgreSQL's processes; with ``db_name``, only the backends connected to that database
    (their title is "postgres: [cluster:] user database client state"), so another benchmark on
    the same server does not count.  The server's shared processes (WAL writer, checkpointer,
    autovacuum) are then left out."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() != "postgres":
                    continue
                if db_name is None or f" {db_name} " in (d / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


_ACCEPTED_CHANGED = 'noops_registry_reports_accepted_total{changed="true"} '


async def reports_accepted(client: httpx.AsyncClient) -> float:
    """Reports the registry accepted as a change (each instance's RUNNING one, here), from its
    /metrics: counted when judged, before their batch commits, so a gate, not the answer."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(_ACCEPTED_CHANGED):
            return float(line[len(_ACCEPTED_CHANGED):])
    return 0.0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(n_hosts: int, n_apps: int, n_instances: int, timeout_s: float, bulk: int, idle_s: float = 0.0) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-"))
    tag = uuid.uuid4().hex[:6]
    ports = infra.free_ports(6)
    cfg = ClusterConfig(run_dir=run_dir, cluster=f"b{tag}", db_name=f"noops_bench_{tag}", nats_port=ports[0],
                        nats_monitor_port=ports[1], gateway_port=ports[2], placer_port=ports[3],
                        registry_port=ports[4], reconciler_port=ports[5], hosts=(),
                        extra_env={"NOOPS_LOG_LEVEL": "WARNING", "NOOPS_PLACER_RESYNC_S": "30", "NOOPS_SINKS": "",
                                   "NOOPS_HEARTBEAT_GRACE_S": "10",
                                   # The hollow hosts' made-up addresses (bench/hollow.py), not a simulated network's.
                                   "NOOPS_REGISTRY_CONTAINER_RANGES": str(ADDRESSES)})
    infra.ensure_postgres()
    infra.ensure_database(cfg.db_name, fresh=True)
    ensure_tokens(cfg)   # the admin token every request to the gateway carries
    infra.start_nats(run_dir, port=cfg.nats_port, monitor_port=cfg.nats_monitor_port)
    names = ["gateway", "placer", "registry"]
    try:
        for name in names:
            start_process(cfg, name)
        wait_healthy(cfg, names)
        nc = await bus.connect(cfg.nats_url, "bench")
        await bus.ensure_streams(nc.jetstream())
        pool = await db.connect(cfg.db_dsn)
        hollow = HollowHosts(nc, n_hosts)
        tasks = [asyncio.create_task(hollow.heartbeat_loop()), asyncio.create_task(hollow.serve())]
        deadline = time.monotonic() + 60
        while await pool.fetchval("SELECT count(*) FROM hosts") < n_hosts:
            assert time.monotonic() < deadline, "hosts did not register"
            await asyncio.sleep(0.2)

        procs = {name: [infra.read_pid(run_dir / f"{name}.pid")] for name in [*names, "nats"]}
        procs["bench (hollow hosts)"] = [os.getpid()]

        def cpu_now() -> dict[str, float]:
            # CPU seconds per component so far; PostgreSQL's backends come and go (an approximation).
            # "postgres": this database's backends; "postgres (server)": every PostgreSQL process
            # on the machine, other benchmarks' and the shared WAL writer and checkpointer included.
            return {name: cpu_seconds(p) for name, p in procs.items()} | {
                "postgres": cpu_seconds(postgres_pids(cfg.db_name)), "postgres (server)": cpu_seconds(postgres_pids())}

        idle = {}
        if idle_s > 0:
            # The cluster's standing cost: heartbeats only, no deployment going on.
            before = cpu_now()
            await asyncio.sleep(idle_s)
            idle = {name: round((t - before[name]) / idle_s, 3) for name, t in cpu_now().items()}

        apps = make_apps(n_apps, n_instances, seed=7)
        specs = [{"id": a.id.replace("app", "app-"), "image": "noops/base:latest", "cmd": ["true"],
                  "instances": a.instances, "resources": {"cpus": a.cpus, "mem_mb": int(a.mem_mb)},
                  "constraints": [[c.attribute, c.operator] + ([c.value] if c.value else []) for c in a.constraints]}
                 for a in apps]
        # CPU time per component over the run: on 2 cores the wall time is roughly their sum / 2.
        cpu0 = cpu_now()
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cfg.gateway_port}", timeout=60,
                                     headers=cfg.auth_headers()) as client:
            if bulk:
                # POST /v1/apps/bulk: `bulk` apps per request (one transaction each), 4 requests at once.
                queue = [specs[k:k + bulk] for k in range(0, len(specs), bulk)]
                path, concurrency = "/v1/apps/bulk", 4
            else:
                queue, path, concurrency = list(specs), "/v1/apps", 16

            async def poster() -> None:
                while queue:
                    body = queue.pop(0)
                    r = await client.post(path, json=body)
                    assert r.status_code == 201, r.text

            await asyncio.gather(*(poster() for _ in range(concurrency)))
        t_posted = time.monotonic() - t0
        t_placed = t_judged = t_running = None
        timeline: list[tuple] = []

        async def sample() -> None:
            # Cheap counters only (PostgreSQL's statistics views, the hollow hosts' own counts):
            # where the 100,000 instances are, every 2 s.
            while True:
                await asyncio.sleep(2.0)
                st = {r["relname"]: r for r in await pool.fetch(
                    "SELECT relname, n_tup_ins, n_tup_del FROM pg_stat_user_tables WHERE relname IN ('instances', 'outbox')")}
                timeline.append((round(time.monotonic() - t0, 1), st["instances"]["n_tup_ins"],
                                 st["outbox"]["n_tup_ins"] - st["outbox"]["n_tup_del"], hollow.started))
        sampler = asyncio.create_task(sample())
        # Counting 100,000 rows costs PostgreSQL ~40 ms, which the services would miss (polled four
        # times a second from "placed" on, ~0.5 s of it in a run): "placed" is counted by the
        # hollow hosts (every placement delivered), "judged" by the registry's own counter of
        # reports it accepted with a change (its /metrics), and only from then on is the task log
        # counted -- it alone says "all RUNNING" -- ten times a second.
        metrics = httpx.AsyncClient(base_url=f"http://127.0.0.1:{cfg.registry_port}", timeout=10)
        counted = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if t_placed is None:
                if hollow.started >= n_instances:
                    t_placed = time.monotonic() - t0
                await asyncio.sleep(0.05)
                continue
            if t_judged is None:
                if await reports_accepted(metrics) >= n_instances:
                    t_judged = time.monotonic() - t0
                elif time.monotonic() - counted < 5.0:
                    # A report counted otherwise (not as a change) must not stall the run: the
                    # task log is still counted every 5 s meanwhile.
                    await asyncio.sleep(0.1)
                    continue
            counted = time.monotonic()
            if await pool.fetchval("SELECT count(*) FROM instances WHERE state = 'RUNNING'") >= n_instances:
                t_running = time.monotonic() - t0
                break
            await asyncio.sleep(0.1)
        await metrics.aclose()
        sampler.cancel()
        cpu = {name: round(t - cpu0[name], 1) for name, t in cpu_now().items()}
        final = await pool.fetchrow("SELECT count(*) AS placed, count(*) FILTER (WHERE state = 'RUNNING') AS running "
                                    "FROM instances")
        waiting = await pool.fetch("SELECT id, status_reason FROM apps WHERE status = 'waiting' LIMIT 3")
        # Rows written per table and transactions committed: where PostgreSQL's work comes from.
        writes = {r["relname"]: [r["n_tup_ins"], r["n_tup_upd"], r["n_tup_del"]] for r in await pool.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
            "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname")}
        commits = await pool.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        for t in tasks:
            t.cancel()
        placer_pid = infra.read_pid(run_dir / "placer.pid")
        registry_pid = infra.read_pid(run_dir / "registry.pid")
        result = {
            "hosts": n_hosts, "apps": n_apps, "instances": n_instances, "bulk": bulk,
            "posted_s": round(t_posted, 2), "all_placed_s": t_placed and round(t_placed, 2),
            "all_reports_judged_s": t_judged and round(t_judged, 2),
            "all_running_s": t_running and round(t_running, 2),
            "placed": final["placed"], "running": final["running"],
            "end_to_end_per_s": t_running and round(n_instances / t_running),
            "placer_peak_rss_mb": placer_pid and round(peak_rss_mb(placer_pid)),
            "registry_peak_rss_mb": registry_pid and round(peak_rss_mb(registry_pid)),
            "cpu_s": cpu,
            "timeline (s, instances inserted, outbox backlog, delivered to hosts)": timeline,
            "idle_cpu_s_per_s": idle,
            "rows_written (inserted, updated, deleted)": writes, "transactions": commits,
            "waiting_examples": [dict(r) for r in waiting],
        }
        await pool.close()
        await nc.close()
        return result
    finally:
        for name in names:
            infra.stop_pidfile(run_dir / f"{name}.pid")
        infra.stop_pidfile(run_dir / "nats.pid")
        infra.drop_database(cfg.db_name)
        shutil.rmtree(run_dir, ignore_errors=True)   # NATS store, logs, sockets


def main() -> None:
    unwind_on_sigterm()
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=10_000)
    p.add_argument("--apps", type=int, default=1_000)
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--bulk", type=int, default=100,
                   help="apps per POST /v1/apps/bulk; 0: one POST /v1/apps per app, 16 at a time")
    p.add_argument("--idle", type=float, default=0.0,
                   help="first measure this many seconds of heartbeats alone (CPU seconds per second per process)")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args.hosts, args.apps, args.instances, args.timeout, args.bulk, args.idle)), default=str))


if __name__ == "__main__":
    main()
