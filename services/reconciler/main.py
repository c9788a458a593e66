"""reconciler: compares every host's inventory with the task log, exports the drift, and marks
instances whose containers are gone LOST (repair.py).

    every interval: hosts (task log) --noops.inventory.<host> request/reply--> inventories
                    diff(task log, inventories) --> noops_reconciler_drift{kind} gauges + log lines
                                                --> missing twice in a row: LOST + outbox
                                                    (noops.endpoints.<app>, noops.deploy.<app>)
                    load-balancer ports of apps deleted > NOOPS_LB_PORT_RETAIN_S ago --> freed
"""
from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client as NATS
from prometheus_client import Gauge

from libs import db, messages, natsauth, outbox, retry, subjects
from libs.service import Health, connect_backends, run_ops_server, run_service
from libs.settings import ReconcilerSettings, load
from services.reconciler.diff import Placed, Report, diff
from services.reconciler.repair import MissingRepair

log = logging.getLogger("noops.reconciler")

DRIFT = Gauge("noops_reconciler_drift", "Differences between the task log and the hosts, last round", ["kind"])
LAST_ROUND = Gauge("noops_reconciler_last_round_timestamp_seconds", "When the last round finished")
HOSTS_CHECKED = Gauge("noops_reconciler_hosts_checked", "Hosts asked for their inventory in the last round")

# Hosts silent for longer than this are not asked (the placer marks them down; issue 4).
RECENT_HOST_S = 30.0


async def ask(nc: NATS, host: str, timeout_s: float) -> messages.Inventory | None:
    try:
        reply = await nc.request(subjects.inventory(host), b"", timeout=timeout_s)
        inv = messages.decode(reply.data, messages.Inventory)
    except (nats.errors.Error, asyncio.TimeoutError, messages.DecodeError) as exc:
        log.debug("no inventory", extra={"host": host, "error": str(exc) or type(exc).__name__})
        return None
    return inv if inv.host == host else None


async def one_round(pool, q: db.Queries, nc: NATS, timeout_s: float) -> Report:
    hosts = [r["id"] for r in await pool.fetch(q.recent_hosts, RECENT_HOST_S)]
    answers = await asyncio.gather(*(ask(nc, h, timeout_s) for h in hosts))
    inventories = dict(zip(hosts, answers))
    # Read the task log after the inventories, so an instance placed meanwhile shows as
    # not-yet-running (not counted) rather than as unexpected.
    placed = [Placed(r["id"], r["host"], r["state"], r["container_id"]) for r in await pool.fetch(q.placed_instances)]
    report = diff(placed, inventories)
    for kind, n in report.counts.items():
        DRIFT.labels(kind).set(n)
    HOSTS_CHECKED.set(len(hosts))
    LAST_ROUND.set(time.time())
    for d in report.drift[:20]:
        log.info("drift", extra={"kind": d.kind, "host": d.host, "instance": d.instance, "detail": d.detail})
    return report


async def release_lb_ports(pool, q: db.Queries, retain_s: float) -> list[str]:
    """Ports of apps deleted more than ``retain_s`` ago, freed; returns "app/port_name:port" each."""
    freed = [f"{r['app']}/{r['port_name']}:{r['port']}" for r in await pool.fetch(q.release_lb_ports, retain_s)]
    if freed:
        log.info("released load-balancer ports of deleted apps", extra={"ports": freed})
    return freed


async def rounds(settings: ReconcilerSettings, pool, q: db.Queries, nc: NATS, repair: MissingRepair,
                 health: Health) -> None:
    """Every interval: one inventory round, its repairs, the load-balancer ports to free."""
    while True:
        try:
            report = await one_round(pool, q, nc, settings.inventory_timeout_s)
            health.detail = {"drift": dict(report.counts)}
            await repair.apply(report.drift)
            await release_lb_ports(pool, q, settings.lb_port_retain_s)
        except db.TRANSIENT as exc:   # the next round is the retry: it comes at the usual interval
            log.warning("round failed; will retry", extra={"error": str(exc) or type(exc).__name__})
        await asyncio.sleep(settings.interval_s)


async def main(settings: ReconcilerSettings) -> None:
    common = settings.common
    policy = retry.Policy.from_settings(common)
    health = Health()
    sup = health.supervisor(policy)
    sup.start("ops", lambda: run_ops_server(health, settings.http, settings.port), restart=False)
    b = await connect_backends(common, "reconciler")
    pool, nc, js = b.pool, b.nc, b.js
    q = db.Queries("reconciler")
    relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("reconciler"), policy=policy,
                         max_attempts=common.outbox_max_attempts, declare_streams=b.declare_streams)
    sup.start("outbox-relay", relay.run)
    repair = MissingRepair(pool, q, relay)
    sup.start("rounds", lambda: rounds(settings, pool, q, nc, repair, health))
    health.ready = True
    log.info("reconciler ready")
    try:
        await sup.wait()
    finally:
        await sup.cancel()
        await nc.close()
        await pool.close()


def run() -> None:
    run_service("reconciler", lambda: load(ReconcilerSettings), main)  # type: ignore[arg-type]
