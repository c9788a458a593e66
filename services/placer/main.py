"""placer: turns deployment requests into placements.

    noops.deploy.<app> (JetStream) --> [reconcile app: read task log, core.decide, commit plan + outbox]
    noops.heartbeat.* (core) --> [hosts table, one upsert per second] --new host--> resync all apps
    every resync interval -----------> resync all apps (level-triggered safety net)
    outbox relay --> noops.place.<host> (JetStream)
"""
from __future__ import annotations

import asyncio
import logging

import pydantic
from nats.aio.msg import Msg

from libs import bus, db, messages, outbox, subjects
from libs.service import Health, run_ops_server, run_service
from libs.settings import PlacerSettings, load
from services.placer.commit import Committer
from services.placer.heartbeats import HeartbeatSink

log = logging.getLogger("noops.placer")

HEARTBEAT_FLUSH_S = 1.0  # how often heartbeats are written to the hosts table


class Placer:
    def __init__(self, committer: Committer, relay: outbox.Relay, pool) -> None:
        self.committer, self.relay, self.pool = committer, relay, pool
        # One committer: decisions are made one app at a time, so two apps' placements
        # never reserve the same free capacity twice.
        self._lock = asyncio.Lock()
        self.resync_now = asyncio.Event()

    async def reconcile(self, app_id: str) -> None:
        async with self._lock:
            try:
                outcome = await self.committer.reconcile_app(app_id)
            except pydantic.ValidationError as exc:
                # A stored spec this version cannot read: permanent, so absorb and say why.
                log.error("stored app spec is invalid; skipping", extra={"app": app_id, "error": str(exc)})
                return
        if outcome and (outcome.placed or outcome.stopped):
            self.relay.kick()

    async def handle_batch(self, msgs: list[Msg]) -> list[bus.Verdict]:
        verdicts: list[bus.Verdict] = []
        apps: list[str] = []
        for m in msgs:
            try:
                req = messages.decode(m.data, messages.DeployRequest)
                subjects.deploy(req.app)  # validates the id
            except (messages.DecodeError, ValueError) as exc:
                log.warning("refusing malformed deploy request", extra={"subject": m.subject, "error": str(exc)})
                verdicts.append(bus.TERM)
                continue
            apps.append(req.app)
            verdicts.append(bus.ACK)
        # Level-triggered: ten requests for one app in a batch are one look at it.
        for app_id in dict.fromkeys(apps):
            await self.reconcile(app_id)
        return verdicts

    async def resync_loop(self, interval_s: float) -> None:
        while True:
            try:
                ids = [r["id"] for r in await self.pool.fetch(self.committer.q.apps_to_resync)]
                for app_id in ids:
                    await self.reconcile(app_id)
            except db.TRANSIENT as exc:
                log.warning("resync failed; will retry", extra={"error": str(exc) or type(exc).__name__})
            try:
                await asyncio.wait_for(self.resync_now.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
            self.resync_now.clear()


async def main(settings: PlacerSettings) -> None:
    health = Health()
    tasks = [asyncio.create_task(run_ops_server(health, settings.http, settings.port))]
    common = settings.common
    pool = await db.connect(common.db_dsn, retry_max_s=common.connect_retry_max_s)
    await db.migrate(pool)
    nc = await bus.connect(common.nats_url, "placer", retry_max_s=common.connect_retry_max_s)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    queries = db.Queries("placer")
    relay = outbox.Relay(pool, js)
    placer = Placer(Committer(pool, queries, heartbeat_grace_s=settings.heartbeat_grace_s), relay, pool)
    sink = HeartbeatSink(pool, queries, on_new_host=lambda _hosts: placer.resync_now.set())
    await nc.subscribe(subjects.HEARTBEAT_ALL, cb=sink.handle)
    tasks += [
        asyncio.create_task(relay.run()),
        asyncio.create_task(sink.run(HEARTBEAT_FLUSH_S)),
        asyncio.create_task(placer.resync_loop(settings.resync_interval_s)),
        asyncio.create_task(bus.pull_loop(js, subjects.PLACER, placer.handle_batch)),
    ]
    health.ready = True
    log.info("placer ready")
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await nc.close()
        await pool.close()


def run() -> None:
    run_service("placer", lambda: load(PlacerSettings), main)  # type: ignore[arg-type]
