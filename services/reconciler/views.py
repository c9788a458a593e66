"""Gathering one round's inputs: every host's inventory, the sinks' read-back, Prometheus'
targets, then the task log.

Order matters: the hosts and sinks are asked first and the task log is read after, so an
instance committed meanwhile shows as placed-but-not-yet-running (not drift) rather than as a
container nobody placed.  Every view that cannot be read is named in ``Views.errors`` and left
out of the comparison (plan.py judges only what it was given), never taken for "empty".
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncpg
import httpx
import nats.errors
from nats.aio.client import Client as NATS

from libs import db, endpoints, messages, subjects
from services.reconciler.plan import Desired, Endpoint, Instance, Observed

log = logging.getLogger("noops.reconciler.views")


@dataclass(frozen=True)
class Views:
    desired: Desired
    observed: Observed
    errors: tuple[str, ...] = ()
    hosts_asked: int = 0
    hosts_answered: int = 0
    read_s: dict[str, float] = field(default_factory=dict)


async def ask_inventory(nc: NATS, host: str, timeout_s: float) -> messages.Inventory | None:
    try:
        reply = await nc.request(subjects.inventory(host), b"", timeout=timeout_s)
        inv = messages.decode(reply.data, messages.Inventory)
    except (nats.errors.Error, asyncio.TimeoutError, messages.DecodeError) as exc:
        log.debug("no inventory", extra={"host": host, "error": str(exc) or type(exc).__name__})
        return None
    return inv if inv.host == host else None


async def inventories(nc: NATS, hosts: list[str], *, timeout_s: float, concurrency: int
                      ) -> dict[str, messages.Inventory | None]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(h: str) -> messages.Inventory | None:
        async with gate:
            return await ask_inventory(nc, h, timeout_s)
    return dict(zip(hosts, await asyncio.gather(*(one(h) for h in hosts))))


async def sinks(nc: NATS, timeout_s: float, *, max_pages: int = 1000) -> tuple[tuple[messages.SinkView, ...] | None, str]:
    """The registry's read-back of its sinks, page by page (one snapshot), or (None, why)."""
    req = messages.SinksObserve()
    views: dict[str, messages.SinkView] = {}
    try:
        for _ in range(max_pages):
            reply = await nc.request(subjects.SINKS_OBSERVE, messages.encode(req), timeout=timeout_s)
            got = messages.decode(reply.data, messages.SinksObserved)
            if req.snapshot and got.snapshot != req.snapshot:
                return None, "registry: the sinks' read-back expired while it was read; next round"
            merge(views, got.sinks)
            if not got.next_offset:
                return tuple(views.values()), ""
            req = messages.SinksObserve(snapshot=got.snapshot, offset=got.next_offset)
        return None, f"registry: sinks' read-back longer than {max_pages} pages"
    except nats.errors.NoRespondersError:
        return None, "registry: no responder for the sinks' read-back"
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        return None, f"registry: sinks not read back ({str(exc) or type(exc).__name__})"
    except messages.DecodeError as exc:
        return None, f"registry: unreadable sinks read-back ({exc})"


def merge(into: dict[str, messages.SinkView], page: list[messages.SinkView]) -> None:
    """Add one page's views to what the earlier pages gave (a group may span pages) (pure)."""
    for v in page:
        old = into.get(v.sink)
        if old is None:
            into[v.sink] = messages.SinkView(sink=v.sink, ok=v.ok, groups={g: list(m) for g, m in v.groups.items()},
                                             error=v.error)
            continue
        groups = old.groups
        for g, members in v.groups.items():
            groups.setdefault(g, []).extend(members)
        into[v.sink] = messages.SinkView(sink=v.sink, ok=old.ok and v.ok, groups=groups, error=old.error or v.error)


async def prometheus_targets(client: httpx.AsyncClient, url: str, job: str
                             ) -> tuple[frozenset[tuple[str, str]] | None, str]:
    """(instance, port name) of the job's active targets, or (None, why)."""
    try:
        r = await client.get(f"{url.rstrip('/')}/api/v1/targets", params={"state": "active"})
        r.raise_for_status()
        active = r.json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return None, f"prometheus: targets not read ({str(exc) or type(exc).__name__})"
    out = set()
    for t in active:
        labels = t.get("labels") or {}
        if t.get("scrapePool") == job and labels.get("app"):
            out.add((labels.get("instance", ""), labels.get("port_name", "")))
    return frozenset(out), ""


async def task_log(conn: asyncpg.Connection, q: db.Queries, named: set[str], *, host_silent_s: float) -> Desired:
    """What the task log says; ``named``: instance ids the views hold (their ended rows are read too)."""
    insts = {r["id"]: Instance(r["id"], r["app"], r["host"], r["state"], r["epoch"], r["container_id"])
             for r in await conn.fetch(q.live_instances)}
    unknown = sorted(named - insts.keys())
    if unknown:
        for r in await conn.fetch(q.instances_named, unknown):
            insts[r["id"]] = Instance(r["id"], r["app"], r["host"], r["state"], r["epoch"], r["container_id"])
    in_service: dict[str, list[Endpoint]] = {}
    parsed: dict[str, dict[str, int]] = {}
    for r in await endpoints.in_service(conn, None):
        in_service.setdefault(r["app"], []).append(Endpoint(r["id"], r["ip"], endpoints.ports_of(r["ports"], parsed)))
    lb = {r["port"]: (r["app"], r["port_name"]) for r in await conn.fetch(q.lb_ports)}
    silent = tuple(r["id"] for r in await conn.fetch(q.silent_hosts, host_silent_s))
    return Desired(insts, {a: tuple(v) for a, v in in_service.items()}, lb, silent)


def named_instances(invs: dict[str, messages.Inventory | None]) -> set[str]:
    out: set[str] = set()
    for inv in invs.values():
        if inv is not None:
            out.update(i.instance for i in inv.items)
            out.update(inv.volumes)
            out.update(inv.leases)
    return out
