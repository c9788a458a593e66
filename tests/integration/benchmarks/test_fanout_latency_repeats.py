"""bench.fanout_latency for real (its own NATS, HAProxy, nft table, database and registry process)
with a repeated rate: each run inserts apps of its own and measures every report.  (Named by
rate, the second run's app ids were the first's: UniqueViolationError.)"""
from __future__ import annotations

from bench import fanout_latency


async def test_a_repeated_rate_runs_twice() -> None:
    results = await fanout_latency.main_async([20, 20], 0.5, 2)
    assert [(r["rate"], r["reports"]) for r in results] == [(20, 10), (20, 10)]
