"""Carrying out what plan.compute decided.  Every action is idempotent: marking LOST only moves a
RUNNING instance (a second try finds nothing to do), hostd re-checks each sweep item on the host
before acting (a container is removed only if it still has that id), and a sink repair makes the
registry converge the app to the task log again.  Each is logged with its reason and counted.

    lose    one transaction: fence check, RUNNING -> LOST, events, addresses released, the apps'
            new endpoint sets and deploy requests queued (outbox)  --> registry's sinks, placer
    sweep   noops.sweep.<host> request/reply, per host concurrently  --> hostd removes, answers
    repair  noops.sinks.repair request/reply                         --> registry re-converges
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS
from prometheus_client import Counter

from libs import endpoints, ipam, messages, outbox, subjects
from libs.db import Queries

log = logging.getLogger("noops.reconciler.act")

ACTIONS = Counter("noops_reconciler_actions_total", "Repairs the reconciler carried out, by outcome",
                  ["action", "outcome"])


class Fenced(RuntimeError):
    """Another reconciler leads now: this one must not write."""


# Per round, one log line per action up to this many; past it only the round's summary line.
LOG_LINES_PER_ROUND = 50


@dataclass
class Done:
    """action -> outcome -> count, for the round's record and the metrics."""
    counts: dict[str, Tally] = field(default_factory=dict)
    lines: int = 0

    def log(self, level: int, message: str, **extra: object) -> None:
        self.lines += 1
        if self.lines <= LOG_LINES_PER_ROUND:
            log.log(level, message, extra=extra)
        elif self.lines == LOG_LINES_PER_ROUND + 1:
            log.info("more actions this round: see the round's summary and GET /v1/drift")

    def add(self, action: str, outcome: str, n: int = 1) -> None:
        if n:
            self.counts.setdefault(action, Tally())[outcome] += n
            ACTIONS.labels(action, outcome).inc(n)

    def as_json(self) -> dict[str, dict[str, int]]:
        return {a: dict(t) for a, t in sorted(self.counts.items())}


async def lose(pool: asyncpg.Pool, q: Queries, relay: outbox.Relay, instances: Sequence[str], *,
               fence: int, done: Done) -> list[str]:
    """Mark these RUNNING instances LOST (their containers are gone) and hand their apps to the placer."""
    if not instances:
        return []
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(q.fence_check) != fence:
            raise Fenced("another reconciler took over")
        rows = await conn.fetch(q.lose_missing, sorted(instances))
        if rows:
            ids = [r["id"] for r in rows]
            await conn.execute(q.insert_events, ids)
            await ipam.release(conn, ids)
            apps = {r["app"] for r in rows}
            out = await endpoints.announcements(conn, apps)
            out += [(subjects.deploy(a), f"deploy:{a}:{uuid.uuid4().hex}",
                     messages.DeployRequest(app=a, reason="container gone"))
                    for a in sorted({r["app"] for r in rows if r["desired"] == "RUNNING"})]
            await outbox.enqueue(conn, out)
    lost = [r["id"] for r in rows]
    if lost:
        relay.kick()
        log.warning("instances lost: containers gone", extra={"instances": lost[:50], "count": len(lost)})
    done.add("lose", "done", len(lost))
    done.add("lose", "absent", len(instances) - len(lost))
    return lost


async def sweep(nc: NATS, sweeps: Mapping[str, Sequence[messages.SweepItem]], *, timeout_s: float,
                concurrency: int, done: Done) -> None:
    """Hosts concurrently (``concurrency`` at once); one host's items in requests of at most
    SWEEP_ITEMS_PER_MESSAGE, one after another (hostd handles a request's items concurrently)."""
    gate = asyncio.Semaphore(max(1, concurrency))
    step = messages.SWEEP_ITEMS_PER_MESSAGE

    async def one(host: str, items: Sequence[messages.SweepItem]) -> None:
        try:
            reply = await nc.request(subjects.sweep(host), messages.encode(messages.Sweep(host=host, items=list(items))),
                                     timeout=timeout_s)
            result = messages.decode(reply.data, messages.SweepResult)
        except (nats.errors.Error, asyncio.TimeoutError, messages.DecodeError) as exc:
            done.log(logging.WARNING, "sweep not done: host did not answer", host=host, items=len(items),
                     error=str(exc) or type(exc).__name__)
            for it in items:
                done.add(f"sweep_{it.kind}", "failed")
            return
        answered = {(o.item.kind, o.item.instance, o.item.key) for o in result.outcomes}
        for o in result.outcomes:
            done.add(f"sweep_{o.item.kind}", o.outcome)
            level = logging.WARNING if o.outcome in ("removed", "failed") else logging.INFO
            done.log(level, f"sweep {o.item.kind}: {o.outcome}", host=host, instance=o.item.instance,
                     key=o.item.key[:12], reason=o.item.reason, detail=o.detail)
        for it in items:
            if (it.kind, it.instance, it.key) not in answered:
                done.add(f"sweep_{it.kind}", "failed")

    async def host(h: str, items: Sequence[messages.SweepItem]) -> None:
        async with gate:
            for k in range(0, len(items), step):
                await one(h, items[k:k + step])

    await asyncio.gather(*(host(h, items) for h, items in sorted(sweeps.items())))


async def repair(nc: NATS, repairs: Mapping[str, Sequence[str]], *, timeout_s: float, done: Done) -> None:
    if not repairs:
        return
    body = messages.SinksRepair(repairs={s: list(a) for s, a in sorted(repairs.items())})
    try:
        reply = await nc.request(subjects.SINKS_REPAIR, messages.encode(body), timeout=timeout_s)
        queued = messages.decode(reply.data, messages.SinksRepair).repairs
    except (nats.errors.Error, asyncio.TimeoutError, messages.DecodeError) as exc:
        log.warning("sink repair not queued: the registry did not answer", extra={"error": str(exc) or type(exc).__name__})
        for s, apps in repairs.items():
            done.add(f"repair_{s}", "failed", len(apps))
        return
    for s, apps in sorted(repairs.items()):
        got = set(queued.get(s, ()))
        done.add(f"repair_{s}", "queued", len(got & set(apps)))
        done.add(f"repair_{s}", "refused", len(set(apps) - got))
        log.warning("sink entries disagree with the task log: repair queued", extra={"sink": s, "apps": list(apps)[:50]})
