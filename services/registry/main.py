"""registry: verifies container-IP reports against the task log and announces endpoint changes.

    noops.report.<host> (JetStream) --> [judge against task log, record, outbox] --> noops.endpoints.<app>
                                                                          \\--> noops.deploy.<app> (instance ended)
"""
from __future__ import annotations

import asyncio
import logging

from libs import bus, db, natsauth, outbox, subjects
from libs.service import Health, connect_backends, run_ops_server, run_service
from libs.settings import RegistrySettings, load
from services.registry.announcer import Announcer
from services.registry.records import Records
from services.registry.sinks import setup as sink_setup
from services.registry.sinks.fanout import Fanout

log = logging.getLogger("noops.registry")

# Two report batches in flight: one waits on PostgreSQL while the next is judged.  Safe because
# each batch locks its instances in id order and a state never moves backwards (judge.py).
REPORT_BATCHES_IN_FLIGHT = 2
# Reports judged and written per transaction; each batch announces an app's endpoint set once.
REPORT_BATCH = 1000


async def main(settings: RegistrySettings) -> None:
    health = Health()
    tasks = [asyncio.create_task(run_ops_server(health, settings.http, settings.port))]
    b = await connect_backends(settings.common, "registry")
    pool, nc, js = b.pool, b.nc, b.js
    relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("registry"))
    announcer = Announcer(pool, relay)
    records = Records(pool, db.Queries("registry"), relay, announcer)
    handler: bus.BatchHandler = records.handle_batch
    # Fan-out (sinks/fanout.py): fed after each committed report batch, by noops.endpoints.*
    # (other writers) and by a periodic full resync; each sink runs in its own task.  No sinks
    # (NOOPS_SINKS=""): nothing to feed, so no task-log reads for them either.
    runners = sink_setup.runners(sink_setup.build_sinks(settings), settings)
    if runners:
        fanout = Fanout(pool, db.Queries("registry"), runners, lb_bind_host=settings.lb_bind_host,
                        lb_port_range=settings.lb_port_range(), resync_s=settings.sinks_resync_s)
        await nc.subscribe(subjects.ENDPOINTS_ALL, cb=fanout.on_endpoints)
        handler = fanout.feeding(handler)
        tasks += [asyncio.create_task(fanout.run()), *(asyncio.create_task(r.run()) for r in runners)]
    tasks += [asyncio.create_task(relay.run()), asyncio.create_task(announcer.run()),
              asyncio.create_task(bus.pull_loop(js, subjects.REGISTRY, handler,
                                                batch=REPORT_BATCH, concurrency=REPORT_BATCHES_IN_FLIGHT))]
    health.ready = True
    log.info("registry ready")
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await nc.close()
        await pool.close()


def run() -> None:
    run_service("registry", lambda: load(RegistrySettings), main)  # type: ignore[arg-type]
