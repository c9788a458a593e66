"""Time retention's batches in a big task log (docs/retention.md): 100,000 instances over 1,000
apps, of which ``--ended`` ended with ~5 events each; half of the ended ones past the age.  Times
each age-rule batch and each count-rule batch of 1,000 (pick + delete, one transaction), the
count rule's per-call app scan and a dry run.  Its own database, dropped after.

    .venv/bin/python -m bench.retention_prune [--instances 100000] [--ended 80000] [--batches 5]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench import taskdb
from libs import db
from services.reconciler.retention import RetentionPolicy, prune

FILL = """
INSERT INTO apps (id, version, spec, instances)
SELECT 'app-' || a, 1, '{}'::jsonb, 20 FROM generate_series(0, $1 - 1) AS a;
"""
# Instance k belongs to app k % apps; the first `ended` are ended (FAILED/KILLED/LOST in turn),
# ended k seconds ago for the odd ones and 30 days + k seconds ago for the even ones.
INSTANCES = """
INSERT INTO instances (id, app, version, host, epoch, cpus, mem_mb, state, created_at, updated_at)
SELECT 'i-' || k, 'app-' || (k % $2), 1, 'h' || (k % 100), 1, 0.1, 32,
       CASE WHEN k < $3 THEN (ARRAY['FAILED', 'KILLED', 'LOST'])[k % 3 + 1] ELSE 'RUNNING' END,
       now() - make_interval(secs => 40 * 86400 - k),
       now() - make_interval(secs => CASE WHEN k % 2 = 0 THEN 30 * 86400 + k ELSE k END)
FROM generate_series(0, $1 - 1) AS k;
"""
EVENTS = """
INSERT INTO instance_events (instance, state, reason, source)
SELECT 'i-' || k, s, '', 'bench' FROM generate_series(0, $1 - 1) AS k,
       unnest(ARRAY['PENDING', 'STARTING', 'RUNNING', 'FAILED', 'FAILED']) AS s;
"""


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms ({len(xs)} batches)"


async def run(args: argparse.Namespace) -> None:
    async with taskdb.throwaway("ret") as (_, pool):
        t = time.perf_counter()
        await pool.execute(FILL, args.apps)
        await pool.execute(INSTANCES, args.instances, args.apps, args.ended)
        await pool.execute(EVENTS, args.ended)
        await pool.execute("VACUUM ANALYZE instances")
        await pool.execute("VACUUM ANALYZE instance_events")
        events = await pool.fetchval("SELECT count(*) FROM instance_events")
        print(f"task log: {args.instances} instances ({args.ended} ended) over {args.apps} apps, "
              f"{events} events; filled in {time.perf_counter() - t:.1f}s")
        q = db.Queries("retention")
        t = time.perf_counter()
        dry = await prune(pool, q, RetentionPolicy(), dry_run=True)
        print(f"dry run: would remove {dry.would_instances} instances, {dry.would_events} events "
              f"in {time.perf_counter() - t:.3f}s")
        one = dict(batch=1000, max_batches=1)
        age, count = [], []
        for _ in range(args.batches):
            got = await prune(pool, q, RetentionPolicy(keep_per_app=0, max_age_s=7 * 86400, **one))
            assert got.instances == 1000, got
            age.append(got.seconds)
        t = time.perf_counter()
        over = await pool.fetch(q.apps_over_count, 50)
        scan = time.perf_counter() - t
        for _ in range(args.batches):
            got = await prune(pool, q, RetentionPolicy(keep_per_app=10, max_age_s=0, **one))
            assert got.instances == 1000, got
            count.append(got.seconds)
        print(f"age rule, one batch of 1,000 (+~5,000 events): {ms(age)}")
        print(f"count rule, one batch of 1,000 (+~5,000 events, apps scan included): {ms(count)}")
        print(f"count rule's apps scan alone: {scan * 1000:.1f} ms ({len(over)} apps over 50)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--ended", type=int, default=80_000)
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--batches", type=int, default=5)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
