"""hostd's entry: wire NATS, the Docker engine and the loops together; shut down cleanly.

Start-up order matters: NATS first (reports need it), then Docker, then adoption (re-announce
what runs here) before the first placement is taken, so a placement never races the adoption
of its own instance.  On cancellation the loops stop, Docker and NATS are closed, and the
containers keep running for the next hostd to adopt.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

from nats.aio.client import Client as NATS

from libs import bus, retry, settings, subjects
from libs.service import Health, run_ops_server, run_service
from libs.supervise import cancel_within
from libs.settings import HostdSettings, SettingsError
from services.hostd import containers as ct
from services.hostd import metrics
from services.hostd.agent import Agent
from services.hostd.events import watch_deaths
from services.hostd.heartbeat import heartbeat_loop, machine_offer
from services.hostd.initstats import InitStats, scrape_loop
from services.hostd.inventory import serve_inventory
from services.hostd.leases import LeaseJournal
from services.hostd.network import Network
from services.hostd.volumes import LoopVolumes, LvmVolumes, VolumeDriver, VolumeError
from services.hostd.reports import Reporter
from services.hostd.runtime import connect_docker
from services.hostd.sweep import serve_sweep
from services.hostd.tombstones import Tombstones
from services.hostd.usage import UsageBook, serve_usage

log = logging.getLogger("noops.hostd")

# Placements per fetch: small enough that a shutdown finishes the batch in hand quickly.
FETCH_BATCH = 32
# Batches in hand at once: a slow stop (a container ignoring SIGTERM) must not hold up the rest.
FETCH_CONCURRENCY = 4


def load_settings(environ: Mapping[str, str] | None = None) -> HostdSettings:
    """Load and check what the environment cannot express by type alone."""
    s = settings.load(HostdSettings, environ)
    if not subjects.TOKEN_RE.fullmatch(s.host_id):
        raise SettingsError(f"NOOPS_HOST_ID={s.host_id!r} is not a valid host id "
                            "(lowercase letters, digits and '-', at most 63)")
    settings.parse_labels(s.labels)  # raises SettingsError on a bad NOOPS_HOST_LABELS
    if s.heartbeat_interval_s <= 0:
        raise SettingsError("NOOPS_HEARTBEAT_INTERVAL_S must be > 0")
    if s.ipam not in ("dhcp", "pool"):
        raise SettingsError(f"NOOPS_HOSTD_IPAM={s.ipam!r}: expected dhcp or pool")
    if s.storage not in ("loop", "lvm"):
        raise SettingsError(f"NOOPS_HOSTD_STORAGE={s.storage!r}: expected loop or lvm")
    if s.docker_timeout_s <= 0 or s.command_timeout_s <= 0:
        raise SettingsError("NOOPS_HOSTD_DOCKER_TIMEOUT_S and NOOPS_HOSTD_COMMAND_TIMEOUT_S must be > 0")
    if s.oom_wait_s < 0:
        raise SettingsError("NOOPS_HOSTD_OOM_WAIT_S must be >= 0")
    if s.health_first_retry_s < 0:
        raise SettingsError("NOOPS_HOSTD_HEALTH_FIRST_RETRY_S must be >= 0 (0: retry after the check's interval)")
    if s.tombstones_max < 1 or s.tombstone_ttl_s <= 0:
        raise SettingsError("NOOPS_HOSTD_TOMBSTONES_MAX must be >= 1 and NOOPS_HOSTD_TOMBSTONE_TTL_S > 0 "
                            "(without tombstones a late start recreates a stopped instance)")
    if s.concurrency < 1 or s.stop_concurrency < 1:
        raise SettingsError("NOOPS_HOSTD_CONCURRENCY and NOOPS_HOSTD_STOP_CONCURRENCY must be >= 1")
    if s.init_stats_interval_s < 0 or s.init_stats_timeout_s <= 0 or s.init_stats_concurrency < 1:
        raise SettingsError("NOOPS_HOSTD_INIT_STATS_INTERVAL_S must be >= 0 (0: off), NOOPS_HOSTD_INIT_STATS_TIMEOUT_S "
                            "> 0 and NOOPS_HOSTD_INIT_STATS_CONCURRENCY >= 1")
    if not 0 <= s.vlan <= 4094:
        raise SettingsError("NOOPS_HOSTD_VLAN must be 0 (none) or a VLAN id up to 4094")
    return s


def make_volumes(cfg: HostdSettings) -> VolumeDriver:
    root = Path(cfg.loop_dir) / f"{cfg.common.cluster}-{cfg.host_id}"
    if cfg.storage == "lvm":
        return LvmVolumes(vg=cfg.volume_group, mount_root=root, activate=cfg.lvm_activate, host=cfg.host_id,
                          command_timeout_s=cfg.command_timeout_s)
    return LoopVolumes(root=root, capacity_mb=cfg.volume_capacity_mb, host=cfg.host_id,
                       command_timeout_s=cfg.command_timeout_s)


def make_capacity(cfg: HostdSettings, volumes: VolumeDriver):  # type: ignore[no-untyped-def]
    async def capacity(instances: int) -> tuple[dict[str, int], int]:
        try:
            disk = {volumes.name: await volumes.free_mb()}
        except (VolumeError, OSError):
            disk = {volumes.name: 0}  # a VG that is not there offers nothing
        free = max(cfg.max_addresses - instances, 0) if cfg.max_addresses else -1
        return disk, free
    return capacity


async def main(cfg: HostdSettings, *, clock: Callable[[], float] = time.time) -> None:
    host = cfg.host_id
    health = Health()
    health.detail = {"host": host, "stage": "connecting"}
    async with AsyncExitStack() as stack:
        ops = asyncio.create_task(run_ops_server(health, cfg.http, cfg.port), name="hostd-ops")
        stack.push_async_callback(_cancel, ops)

        nc = await bus.connect_as(cfg.common, f"hostd-{host}")
        stack.push_async_callback(_close_nats, nc)
        # No ensure_streams here: the central services declare the streams (a host's identity
        # may not); the placements consumer waits for its stream (bus.ensure_consumer).
        js = nc.jetstream()

        policy = retry.Policy.from_settings(cfg.common)
        connect_policy = retry.Policy.for_connect(cfg.common)
        runtime = await connect_docker(cfg.docker_url, policy=connect_policy, timeout_s=cfg.docker_timeout_s)
        stack.push_async_callback(runtime.close)

        state = Path(cfg.state_dir) / f"{cfg.common.cluster}-{host}" if cfg.state_dir else None
        network = Network(host=host, parent=cfg.parent, vlan=cfg.vlan, mode=cfg.ipam, pool_gateway=cfg.pool_gateway,
                          dhcp_timeout_s=cfg.dhcp_timeout_s, clock=clock,
                          journal=LeaseJournal(state / "leases" if state else None))
        problem = await network.check()
        if problem:  # not fatal: starts fail with this reason, stops and adoption still work
            log.error("network not usable", extra={"error": problem})
        volumes = make_volumes(cfg)
        agent = Agent(cluster=cfg.common.cluster, host=host, runtime=runtime,
                      reporter=Reporter(js, host, clock), stop_timeout_s=cfg.stop_timeout_s,
                      network=network, volumes=volumes, clock=clock, concurrency=cfg.concurrency,
                      stop_concurrency=cfg.stop_concurrency,
                      tombstones=Tombstones(state / "tombstones" if state else None, max_count=cfg.tombstones_max,
                                            max_age_s=cfg.tombstone_ttl_s, clock=clock),
                      oom_wait_s=cfg.oom_wait_s, hardening=ct.Hardening.from_settings(cfg),
                      health_first_retry_s=cfg.health_first_retry_s)
        stack.push_async_callback(agent.health.close)  # health loops end before Docker and NATS close
        since = clock()
        health.detail["stage"] = "adopting"
        await agent.adopt()

        inventory = await serve_inventory(nc, runtime, host=host, owner=agent.owner, network=network, volumes=volumes)
        stack.push_async_callback(inventory.unsubscribe)
        sweep = await serve_sweep(nc, agent)
        stack.push_async_callback(sweep.unsubscribe)
        # Answered even with init stats off (an empty book): the host is there, its instances have no stats.
        book = UsageBook()
        usage = await serve_usage(nc, host=host, book=book)
        stack.push_async_callback(usage.unsubscribe)

        stop = asyncio.Event()
        # Supervised (libs/supervise.py): a crashed loop restarts with the retry policy's backoff
        # and shows on /healthz; the tasks below end only when their loop stopped for good.
        sup = health.supervisor(policy)
        placements = sup.start("placements", lambda: bus.pull_loop(
            js, subjects.hostd_consumer(host), agent.handle_batch, batch=FETCH_BATCH, stop=stop,
            concurrency=FETCH_CONCURRENCY, policy=policy, max_deliver=cfg.placement_max_deliver))
        others = [
            sup.start("heartbeat", lambda: heartbeat_loop(
                nc, runtime, host=host, owner=agent.owner, offer=machine_offer(cfg), interval_s=cfg.heartbeat_interval_s,
                clock=clock, capacity=make_capacity(cfg, volumes), ipam=cfg.ipam)),
            sup.start("leases", network.renew_loop),
            sup.start("docker-events", lambda: watch_deaths(runtime, agent, since=since, policy=connect_policy)),
        ]
        if cfg.init_stats_interval_s > 0:
            stack.callback(metrics.INSTANCE_STATS.forget, host)

            def scraped(stats: dict[str, tuple[str, InitStats]]) -> None:
                metrics.INSTANCE_STATS.publish(host, stats)
                book.record(stats, clock())
            others.append(sup.start("init-stats", lambda: scrape_loop(
                runtime, owner=agent.owner, publish=scraped,
                ip_of=lambda inst: att.ip if (att := network.attached.get(inst)) else "",
                interval_s=cfg.init_stats_interval_s, timeout_s=cfg.init_stats_timeout_s,
                concurrency=cfg.init_stats_concurrency)))
        stack.push_async_callback(_stop_loops, stop, placements, others, grace_s=cfg.stop_timeout_s + 5.0)

        health.ready = True
        health.detail["stage"] = "running"
        log.info("hostd ready", extra={"host": host, "cluster": cfg.common.cluster,
                                       "containers": len(agent.containers)})
        done, _ = await asyncio.wait([ops, placements, *others], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # re-raises a loop's crash
        if done == {ops}:
            # The ops endpoint only ends on its own when it could not serve (SystemExit above)
            # or was told to stop: either way, a shutdown rather than a crash.
            log.info("ops endpoint stopped; shutting down")
            return
        raise RuntimeError(f"{', '.join(t.get_name() for t in done)} stopped unexpectedly")


async def _stop_loops(stop: asyncio.Event, placements: asyncio.Task[None], others: list[asyncio.Task[None]],
                      *, grace_s: float) -> None:
    # Let the batch in hand finish (its reports published, its messages acked) so nothing waits
    # out the 120 s ack wait after a restart; cancel it if it takes longer than the grace period.
    # The finally matters: if we are cancelled while waiting, the loops must still be over
    # before Docker and NATS are closed under them.
    stop.set()
    for task in others:
        task.cancel()
    try:
        await asyncio.wait({placements}, timeout=grace_s)
    finally:
        stuck = await cancel_within([placements, *others], what="hostd loops")
        log.info("hostd loops stopped; containers keep running", extra={"stuck": len(stuck)})


async def _cancel(task: asyncio.Task[None]) -> None:
    await cancel_within([task], what=task.get_name())


async def _close_nats(nc: NATS) -> None:
    try:
        await nc.close()
    except Exception as exc:
        log.warning("closing NATS failed", extra={"error": str(exc) or type(exc).__name__})


def run() -> None:
    run_service("hostd", load_settings, main)  # type: ignore[arg-type]

