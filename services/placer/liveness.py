"""Self-healing: hosts judged gone (silence.py) are marked DOWN (their epoch bumped), their
instances LOST — announced to the registry's consumers in the same transaction, so they leave
the load balancer at once — and their apps are looked at again to place replacements.  A DOWN
host that speaks again is sent a stop for every copy the task log no longer assigns to it."""
from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg
from prometheus_client import Counter

from libs import endpoints, ipam, messages, outbox
from libs.db import Queries
from services.placer import outgoing

log = logging.getLogger("noops.placer.liveness")

HOSTS_DOWN = Counter("noops_placer_hosts_marked_down_total", "Hosts marked DOWN after missing heartbeats")
LOST = Counter("noops_placer_instances_lost_total", "Instances marked LOST with their host")
STALE_STOPS = Counter("noops_placer_stale_copy_stops_total", "Stops sent to returning hosts for lost instances")


async def mark_down(pool: asyncpg.Pool, q: Queries, hosts: Sequence[str], *, fence_token: int) -> set[str]:
    """Mark these silent hosts DOWN (silence.judge chose them); returns the apps that lost
    instances (to be replaced now)."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(q.fence_check) != fence_token:
            return set()
        down = [r["id"] for r in await conn.fetch(q.mark_down, list(hosts))]
        if not down:
            return set()
        lost = await conn.fetch(q.lose_instances, down)
        await ipam.release(conn, [r["id"] for r in lost])
        if lost:
            await conn.execute(q.insert_events, [r["id"] for r in lost], ["LOST"] * len(lost),
                               [f"host down ({', '.join(down)})"] * len(lost))
        apps = {r["app"] for r in lost}
        await outbox.enqueue(conn, await endpoints.announcements(conn, apps))
    HOSTS_DOWN.inc(len(down))
    LOST.inc(len(lost))
    log.warning("hosts down", extra={"hosts": down, "instances_lost": len(lost), "apps": sorted(apps)})
    return {r["app"] for r in lost if r["desired"] == "RUNNING"}


async def stop_stale_copies(pool: asyncpg.Pool, q: Queries, hosts: list[str]) -> int:
    """Hosts back from DOWN: whatever still runs there for a LOST instance must stop."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(q.stale_copies, hosts)
        # The stop names the instance and epoch; hostd needs no more of the spec to stop it.
        spec = messages.ContainerSpec(image="", cmd=[], env={}, labels={}, cpus=0, mem_mb=0, ports=[])
        out = outgoing.per_host(messages.Placement(instance=r["id"], app=r["app"], version=r["version"], host=r["host"],
                                                   epoch=r["epoch"], action="stop", spec=spec) for r in rows)
        await outbox.enqueue(conn, out)
    if rows:
        STALE_STOPS.inc(len(rows))
        log.warning("hosts back; stopping stale copies", extra={"hosts": hosts, "instances": len(rows)})
    return len(rows)
