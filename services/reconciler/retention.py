"""Retention: the task log stays bounded.  Ended instances (FAILED, KILLED, LOST) and their events
are removed in short batches once they are not worth keeping (docs/retention.md):

    an ended instance is removed when it ended longer ago than NOOPS_RETAIN_ENDED_S
                                    OR it is beyond the newest NOOPS_RETAIN_ENDED_PER_APP of its app
    and retention may touch it (noops_prunable, migration 0014: no pool address held, not LOST
    on a host that is DOWN and may come back with its container).

Live instances are never candidates.  What must outlive the rows (the crash-loop failure count,
the app's last failure) is kept by PostgreSQL in app_failures where instances end, so nothing
reads a count that pruning lowers.  The reconciler calls ``prune`` once per round; each batch is
its own transaction of index scans and SKIP LOCKED row locks, at most ``max_batches`` per call."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from libs import db
from libs.settings import ReconcilerSettings

log = logging.getLogger("noops.reconciler.retention")

PRUNED = Counter("noops_reconciler_pruned_total", "Task-log rows removed by retention", ["what"])


@dataclass(frozen=True)
class RetentionPolicy:
    keep_per_app: int = 50          # newest ended instances kept per app; 0: no count rule
    max_age_s: float = 7 * 86400.0  # ended longer ago than this: removed; 0: no age rule
    batch: int = 1000               # instances per transaction
    max_batches: int = 10           # transactions per call; 0: retention off

    @classmethod
    def from_settings(cls, s: ReconcilerSettings) -> RetentionPolicy:
        return cls(keep_per_app=s.retain_ended_per_app, max_age_s=s.retain_ended_s,
                   batch=s.retention_batch, max_batches=s.retention_max_batches)

    @property
    def active(self) -> bool:
        return self.max_batches > 0 and self.batch > 0 and (self.keep_per_app > 0 or self.max_age_s > 0)


@dataclass(frozen=True)
class Pruned:
    instances: int = 0        # ended instances removed
    events: int = 0           # their instance_events rows removed
    batches: int = 0          # transactions run
    seconds: float = 0.0      # wall time of the call
    dry_run: bool = False
    would_instances: int = 0  # dry run: what the rules would remove now (no batch limit)
    would_events: int = 0
    more: bool = False        # stopped at max_batches with candidates left (next round goes on)


def remaining_apps(apps: list[str], picked: int, last_app: int, batch: int) -> list[str]:
    """The apps a count-rule batch has not finished: none when it picked less than a full batch
    (every app's surplus fit), else from the last app it took rows from (that one may have more;
    the apps before it gave all theirs)."""
    if picked < batch or last_app <= 0:
        return []
    return apps[last_app - 1:]


async def prune(pool: asyncpg.Pool, queries: db.Queries, policy: RetentionPolicy, *,
                dry_run: bool = False, clock: Callable[[], float] = time.monotonic) -> Pruned:
    """Remove what the policy says, at most ``policy.max_batches`` transactions of ``policy.batch``
    instances.  ``queries`` must hold libs/queries/retention.sql (``db.Queries("retention")``, or
    with other files).  ``dry_run``: remove nothing, count what would go."""
    started = clock()
    if not policy.active:
        return Pruned(dry_run=dry_run)
    if dry_run:
        row = await pool.fetchrow(queries.would_prune, policy.max_age_s, policy.keep_per_app)
        out = Pruned(dry_run=True, seconds=clock() - started,
                     would_instances=row["instances"], would_events=row["events"])
        if out.would_instances:
            log.info("retention (dry run) would remove", extra={"instances": out.would_instances,
                                                               "events": out.would_events})
        return out
    instances = events = batches = 0
    more = False

    async def batch(sql: str, *args: object) -> list[asyncpg.Record]:
        """One transaction: pick by a rule, delete what was picked; returns the picked rows."""
        nonlocal instances, events, batches
        async with pool.acquire() as conn, conn.transaction():
            picked = await conn.fetch(sql, *args)
            row = await conn.fetchrow(queries.delete_ended, [r["id"] for r in picked]) if picked else None
        batches += 1
        if row is not None:
            instances += row["instances"]
            events += row["events"]
        return picked

    # The age rule first: it is the cheaper scan, and what it removes may leave apps under the count.
    if policy.max_age_s > 0:
        while batches < policy.max_batches:
            if len(await batch(queries.pick_ended_before, policy.max_age_s, policy.batch)) < policy.batch:
                break
        else:
            more = True
    if policy.keep_per_app > 0 and batches < policy.max_batches:
        apps = [r["app"] for r in await pool.fetch(queries.apps_over_count, policy.keep_per_app)]
        while apps and batches < policy.max_batches:
            picked = await batch(queries.pick_beyond_newest, apps, policy.keep_per_app, policy.batch)
            apps = remaining_apps(apps, len(picked), max((r["n"] for r in picked), default=0), policy.batch)
        more = more or bool(apps)
    elif policy.keep_per_app > 0:
        more = True
    PRUNED.labels("instances").inc(instances)
    PRUNED.labels("events").inc(events)
    out = Pruned(instances=instances, events=events, batches=batches, seconds=clock() - started, more=more)
    if instances:
        log.info("retention removed ended instances", extra={"instances": instances, "events": events,
                                                             "batches": batches, "more": more,
                                                             "seconds": round(out.seconds, 3)})
    return out
