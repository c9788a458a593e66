"""The FLOOR under bench.placer_e2e's goal: the mandatory work of N instances end to end with no
scheduling and no verification, on the same engines (NATS with noops' streams, PostgreSQL with
noops' schema, the hollow hosts of bench/hollow.py).  A yardstick for what this machine allows,
not noops' services and not a mock of them.

Three processes, as the platform has them:
* "placer" (this process): per batch of 1,000 instances, one transaction writes the instances
  and their PENDING events (the placer's own named queries), then their placements are
  published to JetStream, 4 to a host and one message per host (25,000 messages for 100,000
  instances: fewer than the placer's outbox publishes at this scale);
* the hollow hosts (the simulator): heartbeats of every host each second, one RUNNING report
  per placement, JetStream acks awaited;
* "registry": per report batch (two in flight) one statement records the instances RUNNING and
  one event each, then acks.
Left out of what noops does: the gateway and its bulk POST, placement decisions, reservations,
deployments, the placer's host view (heartbeats are received and dropped), screening and
judging reports, endpoint announcements, change events on NATS and the outbox table itself.

    .venv/bin/python -m bench.floor_e2e [--instances 100000] [--hosts 10000]

Starts its own NATS server and database; removes them at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

from bench import unwind_on_sigterm
from bench.fanout_latency import postgres_backends
from bench.floor_registry import RECORD, Report
from bench.hollow import HollowHosts, host_id
from bench.placer_e2e import cpu_seconds
from devtools import infra
from libs import bus, db, messages, subjects
from libs.jspublish import AckedPublisher

APPS, BATCH, PER_MESSAGE = 1000, 1000, 4


async def hollow_role(url: str, hosts: int) -> None:
    hollow = HollowHosts(await bus.connect(url, "hollow"), hosts)
    await asyncio.gather(hollow.serve(), hollow.heartbeat_loop())


async def registry_role(url: str, dsn: str, expect: int, out: Path) -> None:
    pool = await db.connect(dsn, max_size=4)
    nc = await bus.connect(url, "registry")
    js = nc.jetstream()
    await bus.ensure_consumer(js, subjects.REGISTRY)
    decode = msgspec.json.Decoder(Report).decode
    got = 0

    async def record(msgs: list) -> list[bus.Verdict]:
        nonlocal got
        reports = [decode(m.data) for m in msgs]
        await pool.execute(RECORD, [r.instance for r in reports], [r.ip for r in reports])
        got += len(msgs)
        if got >= expect:
            out.write_text(str(time.monotonic()))
        return [bus.ACK] * len(msgs)

    (out.parent / "registry.ready").write_text("1")
    await bus.pull_loop(js, subjects.REGISTRY, record, batch=1000, concurrency=2)


async def place(pool, nc, n: int, hosts: int) -> None:
    q = db.Queries("placer")
    spec = messages.ContainerSpec(image="noops/base:latest", cmd=["httpd", "-f", "-p", "8080", "-h", "/www"], env={},
                                  labels={}, cpus=0.1, mem_mb=64,
                                  ports=[messages.PortSpec(name="http", container_port=8080)])
    publisher = AckedPublisher(nc)
    pending: list[asyncio.Future] = []
    for k in range(0, n, BATCH):
        ids = [f"a{i % APPS}-{i:06d}" for i in range(k, min(n, k + BATCH))]
        apps = [i.rsplit("-", 1)[0] for i in ids]
        on = [host_id(i // PER_MESSAGE % hosts) for i in range(k, k + len(ids))]
        m = len(ids)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(q.insert_instances, ids, apps, [1] * m, on, [1] * m, [0.1] * m, [64] * m, [0] * m,
                               [0] * m, [1] * m)
            await conn.execute(q.insert_events, ids, ["PENDING"] * m, ["placed"] * m)
        per_host: dict[str, list[messages.Placement]] = {}
        for iid, app, h in zip(ids, apps, on):
            per_host.setdefault(h, []).append(messages.Placement(instance=iid, app=app, version=1, host=h, epoch=1,
                                                                 action="start", spec=spec))
        for h, items in per_host.items():
            for j in range(0, len(items), PER_MESSAGE):
                body = messages.encode(messages.Placements(host=h, items=items[j:j + PER_MESSAGE]))
                pending.append(await publisher.publish(subjects.place(h), body, msg_id=f"floor:{h}:{k}:{j}"))
        if len(pending) >= 2000:   # a window of acks in flight, as the outbox relay keeps
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)


async def run(n: int, hosts: int) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-floor-"))
    (run_dir / "logs").mkdir()
    name = f"noops_bench_floor_{uuid.uuid4().hex[:6]}"
    nport, mport = infra.free_ports(2)
    children: list[subprocess.Popen] = []
    pool = None
    try:
        infra.start_nats(run_dir, port=nport, monitor_port=mport)
        nats_pid = infra.read_pid(run_dir / "nats.pid") or 0
        infra.ensure_postgres()
        dsn = infra.ensure_database(name, fresh=True)
        pool = await db.connect(dsn, max_size=4)
        await db.migrate(pool)
        await pool.executemany("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, '{}'::jsonb, 0)",
                               [(f"a{i}",) for i in range(APPS)])
        await pool.executemany("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, '{}'::jsonb)",
                               [(f"a{i}",) for i in range(APPS)])
        url = f"nats://127.0.0.1:{nport}"
        nc = await bus.connect(url, "placer")
        await bus.ensure_streams(nc.jetstream())
        await nc.subscribe(subjects.HEARTBEAT_ALL, cb=_drop)   # the placer receives every heartbeat
        done = run_dir / "recorded"
        me = [sys.executable, "-m", "bench.floor_e2e"]
        children.append(subprocess.Popen([*me, "--role", "hollow", "--url", url, "--hosts", str(hosts)], cwd=infra.REPO))
        children.append(subprocess.Popen([*me, "--role", "registry", "--url", url, "--dsn", dsn,
                                          "--instances", str(n), "--out", str(done)], cwd=infra.REPO))
        deadline = time.monotonic() + 60
        while not (run_dir / "registry.ready").exists():
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise RuntimeError("the floor's registry or hollow hosts did not start")
            await asyncio.sleep(0.05)
        procs = {"placer (floor)": lambda: [os.getpid()], "hollow hosts": lambda: [children[0].pid],
                 "registry (floor)": lambda: [children[1].pid], "nats": lambda: [nats_pid],
                 "postgres": lambda: postgres_backends(name)}
        cpu0 = {k: cpu_seconds(f()) for k, f in procs.items()}
        t0 = time.monotonic()
        await place(pool, nc, n, hosts)
        placed_s = time.monotonic() - t0
        while not done.exists():
            if time.monotonic() - t0 > 180 or any(c.poll() is not None for c in children):
                raise RuntimeError("reports not all recorded within 180 s")
            await asyncio.sleep(0.01)
        cpu = {k: round(cpu_seconds(f()) - cpu0[k], 2) for k, f in procs.items()}
        await nc.close()
        return {"instances": n, "hosts": hosts, "all_placed_s": round(placed_s, 2),
                "all_recorded_s": round(float(done.read_text()) - t0, 2), "cpu_s": cpu,
                "cpu_sum": round(sum(cpu.values()), 2)}
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(10)
            except subprocess.TimeoutExpired:
                c.kill()
        if pool is not None:
            await pool.close()
        infra.stop_pidfile(run_dir / "nats.pid")
        infra.drop_database(name)
        shutil.rmtree(run_dir, ignore_errors=True)


async def _drop(_msg) -> None:
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--hosts", type=int, default=10_000)
    p.add_argument("--role", choices=("main", "hollow", "registry"), default="main", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.instances < 1 or args.hosts < 1:
        p.error("--instances and --hosts must be at least 1")
    if args.role == "hollow":
        asyncio.run(hollow_role(args.url, args.hosts))
    elif args.role == "registry":
        asyncio.run(registry_role(args.url, args.dsn, args.instances, args.out))
    else:
        unwind_on_sigterm()
        print(json.dumps(asyncio.run(run(args.instances, args.hosts))), flush=True)


if __name__ == "__main__":
    main()
