"""registry: verifies container-IP reports against the task log and announces endpoint changes.

    noops.report.<host> (JetStream) --> [judge against task log, record, outbox] --> noops.endpoints.<app>
                                                                          \\--> noops.deploy.<app> (instance ended)
    noops.sinks.observe / .repair (request) --> [read each sink back / queue a repair] (sinkwatch.py)
"""
from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from nats.aio.msg import Msg

from libs import bus, db, deadletters, natsauth, outbox, retry, subjects
from libs.service import Health, connect_backends, run_ops_server, run_service
from libs.settings import RegistrySettings, load
from services.registry.announcer import Announcer
from services.registry.records import Records
from services.registry.sinkwatch import SinkWatch
from services.registry.sinks import setup as sink_setup
from services.registry.sinks.fanout import Fanout
from services.registry.sinks.runner import Observer

log = logging.getLogger("noops.registry")

# Reports judged and written per transaction; each batch announces an app's endpoint set once.
REPORT_BATCH = 1000


Committed = Callable[[list[Msg]], None]   # a report batch committed (before its acks)


async def main(settings: RegistrySettings, *, observers: tuple[Observer, ...] = (),
               committed: Committed | None = None) -> None:
    """``observers`` (each sink's applications) and ``committed`` are for benchmarks that run the
    registry as its own process (bench/fanout_registry.py); the service passes neither."""
    common = settings.common
    policy = retry.Policy.from_settings(common)
    health = Health()
    sup = health.supervisor(policy)
    sup.start("ops", lambda: run_ops_server(health, settings.http, settings.port), restart=False)
    b = await connect_backends(common, "registry")
    pool, nc, js = b.pool, b.nc, b.js
    # Dead letters of every consumer, hostd's included (hostd has no task log): the server's
    # advisories, recorded here (libs/deadletters.py; permissions in libs/natsauth.py).
    recorder = deadletters.Recorder(pool, source="registry")
    advisories = deadletters.AdvisoryRecorder(nc, js, recorder)
    await advisories.start()
    relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("registry"), service="registry", policy=policy,
                         max_attempts=common.outbox_max_attempts, declare_streams=b.declare_streams)
    announcer = Announcer(pool, relay, busy_share=settings.announce_busy_share, policy=policy)
    ranges = settings.container_networks()
    if not ranges.configured:
        log.warning("NOOPS_REGISTRY_CONTAINER_RANGES is empty: report addresses are checked for form only, "
                    "not against the hosts' container ranges")
    records = Records(pool, db.Queries("registry"), relay, announcer, ranges=ranges)
    handler: bus.BatchHandler = records.handle_batch
    if committed is not None:
        handler = _telling(handler, committed)
    # Fan-out (sinks/fanout.py): fed after each committed report batch, by noops.endpoints.*
    # (other writers) and by a periodic full resync; each sink runs in its own task.  No sinks
    # (NOOPS_SINKS=""): nothing to feed, so no task-log reads for them either.
    runners = sink_setup.runners(sink_setup.build_sinks(settings), settings, observers)
    fanout = Fanout(pool, db.Queries("registry"), runners, lb_bind_host=settings.lb_bind_host,
                    lb_port_range=settings.lb_port_range(), resync_s=settings.sinks_resync_s,
                    policy=policy) if runners else None
    # Read back and repair for the reconciler (sinkwatch.py); with no sinks, observe answers an
    # empty list and every repair is refused.
    watch = SinkWatch(runners, fanout.read if fanout else None, policy=policy)
    if fanout is not None:
        await nc.subscribe(subjects.ENDPOINTS_ALL, cb=fanout.on_endpoints)
        handler = fanout.feeding(handler)
        sup.start("fanout", fanout.run)
        for r in runners:
            sup.start(f"sink-{r.name}", r.run)
        sup.start("sink-repair", watch.run)
    await watch.serve(nc)
    sup.start("outbox-relay", relay.run)
    sup.start("announcer", announcer.run)
    # Several report batches in flight (NOOPS_REGISTRY_REPORT_BATCHES_IN_FLIGHT): safe because each
    # writes only rows still as it read them (else it is judged again, locked, in id order:
    # records.py) and a state never moves backwards (judge.py).
    sup.start("reports", lambda: bus.pull_loop(
        js, subjects.REGISTRY, handler, batch=REPORT_BATCH, concurrency=settings.report_batches_in_flight, policy=policy,
        max_deliver=common.max_deliver, dead_letters=recorder, declare_streams=b.declare_streams))
    # What exists now (modules, settings, connections) lives as long as the process: out of the
    # garbage collector's full passes, which otherwise walk it all again and again while reports
    # wait (a full pass paused the registry for 20-160 ms at 5,000 reports/s).
    gc.freeze()
    health.ready = True
    log.info("registry ready")
    try:
        await sup.wait()
    finally:
        await sup.cancel()
        await advisories.stop()
        await nc.close()
        await pool.close()


def _telling(handler: bus.BatchHandler, committed: Committed) -> bus.BatchHandler:
    async def wrapped(msgs: list[Msg]) -> list[bus.Verdict]:
        verdicts = await handler(msgs)
        committed(msgs)
        return verdicts
    return wrapped


def run() -> None:
    run_service("registry", lambda: load(RegistrySettings), main)  # type: ignore[arg-type]
