"""reconciler: compares every system's records with the task log and repairs the drift
(README.md draws the round).  Only the leader acts: a PostgreSQL advisory lock with a fencing
token (libs/leader.py, table reconciler_fence), like the placer; a standby waits."""
from __future__ import annotations

import logging
import socket

import httpx

from libs import db, natsauth, outbox, retry, subjects
from libs.leader import Leadership, LostLeadership
from libs.service import Backends, Health, connect_backends, run_ops_server, run_service
from libs.settings import ReconcilerSettings, load
from services.reconciler.act import Fenced
from services.reconciler.rounds import Reconciler

log = logging.getLogger("noops.reconciler")

LEADER_LOOPS = ("outbox-relay", "rounds", "leadership")


async def lead(settings: ReconcilerSettings, b: Backends, q: db.Queries, leadership: Leadership, health: Health,
               token: int, policy: retry.Policy, holder: str) -> None:
    common = settings.common
    relay = outbox.Relay(b.pool, b.js, subjects=natsauth.relay_subjects("reconciler"), service="reconciler", policy=policy,
                         max_attempts=common.outbox_max_attempts, declare_streams=b.declare_streams)
    async with httpx.AsyncClient(timeout=settings.sinks_timeout_s) as http:
        rec = Reconciler(settings, b.pool, q, b.nc, relay, holder=holder, fence=token, http=http)
        sub = await b.nc.subscribe(subjects.RECONCILE_NOW, cb=rec.on_now)
        sup = health.supervisor(policy, escalate=(Fenced, LostLeadership))
        sup.start("outbox-relay", relay.run)
        sup.start("rounds", rec.run)
        sup.start("leadership", leadership.watch, restart=False)
        health.detail.update(role="leader", fence=token, dry_run=settings.dry_run)
        try:
            await sup.wait()
        finally:
            await sup.cancel()
            await sub.unsubscribe()
            for name in LEADER_LOOPS:
                health.loops.states.pop(name, None)
            health.detail.update(role="standby")


async def main(settings: ReconcilerSettings) -> None:
    common = settings.common
    policy = retry.Policy.from_settings(common)
    health = Health()
    ops = health.supervisor(policy)
    ops.start("ops", lambda: run_ops_server(health, settings.http, settings.port), restart=False)
    b = await connect_backends(common, "reconciler")
    q = db.Queries("reconciler")
    holder = f"{socket.gethostname()}:{settings.port}"
    leadership = Leadership(db.dsn_of(common), q, holder, service="reconciler",
                            retry_max_s=common.connect_retry_max_s)
    health.ready = True
    health.detail.update(role="standby")
    log.info("reconciler ready", extra={"dry_run": settings.dry_run, "interval_s": settings.interval_s})
    try:
        while True:
            token = await leadership.acquire()
            try:
                await lead(settings, b, q, leadership, health, token, policy, holder)
            except (LostLeadership, Fenced) as exc:
                log.warning("stepping down", extra={"reason": str(exc)})
            else:
                log.error("a leader loop ended; stepping down")
            await leadership.release()
    finally:
        await ops.cancel()
        await leadership.release()
        await b.nc.close()
        await b.pool.close()


def run() -> None:
    run_service("reconciler", lambda: load(ReconcilerSettings), main)  # type: ignore[arg-type]
