"""Benchmark: one whole reconciler round with its I/O — 10,000 hosts' inventories over NATS, the
sinks' read-back, the task log (100,000 instances in PostgreSQL), the comparison, the actions
(1% drift: LOST transactions, sweeps, sink repairs) and the round's record.

The hosts and the registry are HOLLOW (a simulator in this process, as bench/hollow.py is for the
placer): one wildcard subscription answers every ``noops.inventory.<host>`` from an in-memory
table, ``noops.sinks.observe`` with views built from the same table, and sweeps and repairs with
"done".  So the reconciler's own cost is measured: requests, decoding, SQL, the pure core.

    .venv/bin/python -m bench.reconcile_round [--hosts 10000] [--instances 100000] [--drift 0.01]

Starts its own NATS server and database; removes them at the end.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from nats.aio.msg import Msg

from bench.reconcile_core import peak_rss_mib, scale_args
from devtools import infra
from libs import bus, db, messages, outbox, subjects
from libs.settings import CommonSettings, HttpSettings, ReconcilerSettings
from services.reconciler.rounds import Reconciler
from services.registry import sinkwatch

PORTS_SPEC = json.dumps({"ports": [{"name": "http", "container_port": 8080}]})


class HollowCluster:
    """Inventories, sinks' read-back, sweeps and repairs, answered from memory (a simulator)."""

    def __init__(self, n_hosts: int, n_instances: int, n_apps: int, drift: float, seed: int = 11) -> None:
        rnd = random.Random(seed)
        self.hosts = [f"hh{k:05d}" for k in range(n_hosts)]
        self.rows: list[tuple] = []
        items: dict[str, list[messages.InventoryItem]] = {h: [] for h in self.hosts}
        haproxy: dict[str, list[str]] = {}
        nft: dict[str, list[str]] = {}
        gone = set(rnd.sample(range(n_instances), int(n_instances * drift)))
        for k in range(n_instances):
            a, host = k % n_apps, self.hosts[k % n_hosts]
            app, iid, cid = f"app{a:04d}", f"app{a:04d}-{k:012x}", f"{k:064x}"
            ip = f"198.{18 + (k >> 16) % 2}.{(k >> 8) % 256}.{k % 256}"
            self.rows.append((iid, app, 1, host, 1, 0.1, 64, "RUNNING", ip, cid))
            if k not in gone:
                items[host].append(messages.InventoryItem(instance=iid, app=app, container_id=cid, state="running",
                                                          ip=ip, epoch=1))
            haproxy.setdefault(str(20000 + a), []).append(f"{iid} {ip}:8080")
            nft.setdefault(app, []).append(ip)
        for j in range(len(gone)):
            host = self.hosts[rnd.randrange(n_hosts)]
            items[host].append(messages.InventoryItem(instance=f"ghost-{j:012x}", app="ghost",
                                                      container_id=f"g{j:063x}", state="running", epoch=1))
            if j % 2:
                haproxy[str(20000 + rnd.randrange(n_apps))].append(f"x{j} 198.19.255.{j % 250}:80")
            else:
                nft[f"app{rnd.randrange(n_apps):04d}"].pop()
        self.answers = {h: messages.encode(messages.Inventory(host=h, items=v)) for h, v in items.items()}
        # Paged as the registry pages a read (services/registry/sinkwatch.py).
        self.views = [messages.SinkView(sink="haproxy", ok=True, groups=haproxy),
                      messages.SinkView(sink="nft", ok=True, groups=nft)]
        self.entries = sinkwatch.flatten(self.views)
        self.n_apps = n_apps
        self.swept = 0

    async def on_inventory(self, msg: Msg) -> None:
        await msg.respond(self.answers[subjects.host_of(msg.subject)])

    async def on_observe(self, msg: Msg) -> None:
        req = messages.decode(msg.data, messages.SinksObserve) if msg.data else messages.SinksObserve()
        views, nxt = sinkwatch.page(self.views, self.entries, req.offset, 1 << 19)
        await msg.respond(messages.encode(messages.SinksObserved(sinks=views, snapshot="hollow", next_offset=nxt)))

    async def on_sweep(self, msg: Msg) -> None:
        sw = messages.decode(msg.data, messages.Sweep)
        self.swept += len(sw.items)
        await msg.respond(messages.encode(messages.SweepResult(host=sw.host, outcomes=[
            messages.SweepOutcome(item=i, outcome="removed") for i in sw.items])))

    async def on_repair(self, msg: Msg) -> None:
        await msg.respond(msg.data)


async def load_task_log(pool, cl: HollowCluster) -> None:
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO apps (id, version, spec, instances) VALUES ($1, 1, $2::jsonb, 100)",
                               [(f"app{a:04d}", PORTS_SPEC) for a in range(cl.n_apps)])
        await conn.executemany("INSERT INTO app_versions (app, version, spec) VALUES ($1, 1, $2::jsonb)",
                               [(f"app{a:04d}", PORTS_SPEC) for a in range(cl.n_apps)])
        await conn.executemany("INSERT INTO lb_ports (app, port_name, bind_host, port) VALUES ($1, 'http', '127.0.0.1', $2)",
                               [(f"app{a:04d}", 20000 + a) for a in range(cl.n_apps)])
        await conn.executemany("INSERT INTO hosts (id, cpus, mem_mb, last_seen) VALUES ($1, 32, 131072, now())",
                               [(h,) for h in cl.hosts])
        await conn.copy_records_to_table("instances", records=cl.rows, columns=[
            "id", "app", "version", "host", "epoch", "cpus", "mem_mb", "state", "ip", "container_id"])
        await conn.execute("ANALYZE")


async def run(n_hosts: int, n_instances: int, n_apps: int, drift: float) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="noops-bench-rec-"))
    tag = uuid.uuid4().hex[:6]
    db_name = f"noops_bench_{tag}"
    nats_port, mon_port = infra.free_ports(2)
    infra.ensure_postgres()
    infra.ensure_database(db_name, fresh=True)
    infra.start_nats(run_dir, port=nats_port, monitor_port=mon_port)
    try:
        common = dataclasses.replace(CommonSettings(), db_dsn=infra.pg_dsn(db_name), nats_url=f"nats://127.0.0.1:{nats_port}")
        pool = await db.connect(common.db_dsn, max_size=4)
        await db.migrate(pool)
        nc = await bus.connect(common.nats_url, "bench-reconciler")
        t0 = time.perf_counter()
        cl = HollowCluster(n_hosts, n_instances, n_apps, drift)
        await load_task_log(pool, cl)
        setup_s = time.perf_counter() - t0
        for subject, cb in ((subjects.INVENTORY_ALL, cl.on_inventory), (subjects.SINKS_OBSERVE, cl.on_observe),
                            (subjects.SWEEP_ALL, cl.on_sweep), (subjects.SINKS_REPAIR, cl.on_repair)):
            await nc.subscribe(subject, cb=cb)
        q = db.Queries("reconciler")
        fence = await pool.fetchval(q.fence_take, "bench")
        settings = ReconcilerSettings(common=common, http=HttpSettings(), grace_s=0.0, max_actions=10_000,
                                      inventory_timeout_s=20.0, sinks_timeout_s=20.0, host_silent_s=3600.0)
        rec = Reconciler(settings, pool, q, nc, outbox.Relay(pool, nc.jetstream()), holder="bench", fence=fence)
        rounds = []
        for _ in range(3):   # first: grace starts; second: acts; third: what is left (the hollow hosts
            t0 = time.perf_counter()   # still show their drift: they do not change)
            rnd = await rec.one_round()
            rounds.append({"seconds": round(time.perf_counter() - t0, 3),
                           "findings": len(rnd.result.findings) if rnd.result else 0,
                           "timings_s": rnd.timings, "actions": rnd.done.as_json()})
        await nc.close()
        await pool.close()
        return {"hosts": n_hosts, "instances": n_instances, "apps": n_apps, "drift": drift,
                "setup_s": round(setup_s, 1), "rounds": rounds, "swept": cl.swept,
                "process_peak_rss_mib": round(peak_rss_mib(), 1)}
    finally:
        infra.stop_pidfile(run_dir / "nats.pid", timeout=10)
        infra.drop_database(db_name)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    args = scale_args()
    print(json.dumps(asyncio.run(run(args.hosts, args.instances, args.apps, args.drift)), indent=1))


if __name__ == "__main__":
    main()
