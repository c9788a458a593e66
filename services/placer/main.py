"""placer: turns deployment requests into placements.  See README.md for the loop drawn out.

Only the leader (libs/leader.py) works; a standby waits for the lock.  All decisions go through one
worker that takes the apps queued since its last batch and commits them together (commit.py),
so requests for many apps cost one transaction, not one each.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from datetime import datetime, timezone

from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge

from libs import bus, db, deadletters, messages, natsauth, outbox, retry, subjects
from libs.service import Backends, Health, Pacer, connect_backends, paced_gap, run_ops_server, run_service
from libs.settings import PlacerSettings, load
from services.placer import heartbeat_feed, liveness, silence
from services.placer.commit import BatchResult, Committer, Deposed
from services.placer.heartbeats import HeartbeatSink
from services.placer.sampling import Sampling
from libs.leader import Leadership, LostLeadership

log = logging.getLogger("noops.placer")

SILENT = Gauge("noops_placer_hosts_silent", "Up hosts not heard for longer than NOOPS_HOST_LOST_AFTER_S")
MASS_SILENCE = Counter("noops_placer_mass_silence_total",
                       "Times silent hosts were held back from DOWN (placer deaf, or too many silent at once)")

HEARTBEAT_FLUSH_S = 1.0   # how often heartbeats are written to the hosts table
LIVENESS_SWEEP_S = 1.0    # how often silent hosts are looked for
MAX_BATCH = 1000          # apps decided in one transaction
# Batches start at most this often.  While instances come up, the registry asks for another look
# at their apps after every report batch; deciding an app re-reads all its live instances, so a
# big app looked at once per report batch cost the placer most of its time.  Waiting this long
# after a busy batch lets those requests pile up into one look; an idle placer starts at once.
MIN_BATCH_GAP_S = 0.05
# After a batch that placed and stopped nothing (bookkeeping looks: deployment progress, status),
# the next waits its cost / NOOPS_PLACER_QUIET_SHARE, at most this long: while 100,000 instances
# come into service such looks, each re-reading every live instance of its apps, kept the placer
# busy through the registry's last seconds.
QUIET_MAX_GAP_S = 1.0


def batch_gap(res: BatchResult, cost_s: float, quiet_share: float) -> float:
    """How long after a batch's start the next may start: at once (50 ms) while work moves
    (placed, stopped, rolled back), else its cost / ``quiet_share``, at most QUIET_MAX_GAP_S."""
    if res.placed or res.stopped or res.again:
        return MIN_BATCH_GAP_S
    return paced_gap(MIN_BATCH_GAP_S, cost_s, quiet_share, QUIET_MAX_GAP_S)


class WorkQueue:
    """App ids waiting for a decision, deduplicated; ``submit`` waits until they committed."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._ready = asyncio.Event()

    def add(self, apps) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        futs = []
        for a in apps:
            f = loop.create_future()
            self._waiting.setdefault(a, []).append(f)
            futs.append(f)
        if futs:
            self._ready.set()
        return futs

    def nudge(self, apps) -> None:
        for f in self.add(apps):
            f.add_done_callback(lambda fut: fut.exception() if not fut.cancelled() else None)

    async def ready(self) -> None:
        await self._ready.wait()

    async def take(self) -> dict[str, list[asyncio.Future[None]]]:
        await self._ready.wait()
        keys = list(self._waiting)[:MAX_BATCH]
        batch = {k: self._waiting.pop(k) for k in keys}
        if not self._waiting:
            self._ready.clear()
        return batch


class Placer:
    def __init__(self, settings: PlacerSettings, pool, committer: Committer, relay: outbox.Relay,
                 queries: db.Queries) -> None:
        self.settings, self.pool, self.committer, self.relay, self.q = settings, pool, committer, relay, queries
        self.queue = WorkQueue()
        self._resync_now = asyncio.Event()

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        pacer = Pacer(MIN_BATCH_GAP_S)
        failures = retry.Failures(retry.Policy.from_settings(self.settings.common))
        while True:
            await self.queue.ready()
            await pacer.wait()
            started = loop.time()
            batch = await self.queue.take()
            try:
                res = await self.committer.reconcile(list(batch))
            except (Deposed, *db.TRANSIENT) as exc:
                for futs in batch.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(exc)
                if isinstance(exc, Deposed):
                    raise
                delay = failures.failed()
                log.warning("batch failed; apps stay queued", extra={"error": str(exc) or type(exc).__name__,
                                                                     "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)
                self.queue.nudge(batch)
                continue
            failures.ok()
            pacer.gap_s = batch_gap(res, loop.time() - started, self.settings.quiet_share)
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_result(None)
            if res.placed or res.stopped or res.again:
                self.relay.kick()
            if res.again:
                self.queue.nudge(res.again)
            now = datetime.now(timezone.utc)
            for app_id, at in res.wake_at.items():
                loop.call_later(max(0.0, (at - now).total_seconds()) + 0.05, self.queue.nudge, [app_id])

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
        # Level-triggered: ten requests for one app are one look at it.  Ack after the commit.
        try:
            await asyncio.gather(*self.queue.add(dict.fromkeys(apps)))
        except (Deposed, *db.TRANSIENT) as exc:
            # Not committed: deliver again (to this placer once it recovers, or to the new leader).
            log.warning("deploy requests not committed; redelivery later", extra={"error": str(exc)})
            return [bus.nak(1.0) if v is bus.ACK else v for v in verdicts]
        return verdicts

    async def resync_loop(self) -> None:
        """Every app again, every resync interval or at once when capacity appeared."""
        while True:
            try:
                self.queue.nudge([r["id"] for r in await self.pool.fetch(self.q.apps_to_resync)])
            except db.TRANSIENT as exc:
                log.warning("resync failed; will retry", extra={"error": str(exc) or type(exc).__name__})
            try:
                await asyncio.wait_for(self._resync_now.wait(), self.settings.resync_interval_s)
            except asyncio.TimeoutError:
                pass
            self._resync_now.clear()

    async def liveness_loop(self, nc, ears: silence.Ears) -> None:
        """Judge the hosts' silence once a second (silence.py says when none may be judged)."""
        loop = asyncio.get_running_loop()
        s = self.settings
        policy = silence.Policy(lost_after_s=s.host_lost_after_s, mass_silence_share=s.mass_silence_share,
                                eviction_rate_per_s=s.eviction_rate_per_s, eviction_burst=s.eviction_burst)
        # Up in the task log but not heard by this placer yet (it just became leader): their
        # silence counts from now.
        while True:
            try:
                ears.watch([r["id"] for r in await self.pool.fetch(self.q.up_hosts)], loop.time())
                break
            except db.TRANSIENT as exc:
                log.warning("could not read the hosts; retrying", extra={"error": str(exc) or type(exc).__name__})
                await asyncio.sleep(LIVENESS_SWEEP_S)
        tokens, last, reconnects, held = policy.eviction_burst, loop.time(), -1, ""
        while True:
            now = loop.time()
            # A reconnect, even one shorter than a sweep, restarts everyone's clock: while the
            # placer was away it heard nobody.
            if not nc.is_connected or nc.stats["reconnects"] != reconnects:
                ears.deaf()
                reconnects = nc.stats["reconnects"]
            if nc.is_connected:
                ears.listening(now)
            verdict = silence.judge(ears, now, policy, tokens, last)
            tokens, last = verdict.tokens, now
            SILENT.set(len(verdict.silent))
            why = verdict.held if verdict.silent else ""
            if why != held:
                if why and not verdict.down:
                    MASS_SILENCE.inc()
                    log.error("hosts silent but not marked DOWN", extra={"reason": why, "hosts": len(verdict.silent),
                                                                           "sample": list(verdict.silent[:10])})
                elif held:
                    log.warning("silence judged normally again", extra={"silent": len(verdict.silent)})
                held = why
            if verdict.down:
                try:
                    apps = await liveness.mark_down(self.pool, self.q, verdict.down, fence_token=self.committer.token)
                except db.TRANSIENT as exc:
                    log.warning("could not mark hosts down; retrying",
                                extra={"hosts": list(verdict.down), "error": str(exc) or type(exc).__name__})
                    tokens += len(verdict.down)   # nothing was spent
                else:
                    ears.forget(verdict.down)       # heard again when they speak: then UP
                    self.committer.invalidate()
                    self.relay.kick()
                    self.queue.nudge(apps)
            await asyncio.sleep(LIVENESS_SWEEP_S)

    async def host_back(self, hosts: list[str]) -> None:
        self.committer.invalidate()
        if await liveness.stop_stale_copies(self.pool, self.q, hosts):
            self.relay.kick()

    def hosts_appeared(self, _hosts: list[str]) -> None:
        # Capacity appeared: everything waiting for room is looked at again.
        self.committer.invalidate()
        self._resync_now.set()


async def lead(settings: PlacerSettings, b: Backends, queries: db.Queries, leadership: Leadership,
               health: Health, token: int, policy: retry.Policy) -> None:
    pool, nc, js, common = b.pool, b.nc, b.js, settings.common
    committer = Committer(pool, queries, heartbeat_grace_s=settings.heartbeat_grace_s,
                          sampling=Sampling.from_settings(settings))
    committer.token = token
    relay = outbox.Relay(pool, js, subjects=natsauth.relay_subjects("placer"), service="placer", policy=policy,
                         max_attempts=common.outbox_max_attempts, declare_streams=b.declare_streams)
    placer = Placer(settings, pool, committer, relay, queries)
    ears = silence.Ears()
    sink = HeartbeatSink(pool, queries, on_new_host=placer.hosts_appeared, on_host_back=placer.host_back, ears=ears,
                         grace_s=settings.heartbeat_grace_s)
    feed = await heartbeat_feed.subscribe(nc, sink, fast=settings.heartbeat_fast_path)
    # A crashed loop restarts with the policy's backoff; losing leadership (Deposed from the
    # committer, LostLeadership from the watch) is escalated instead: the caller steps down.
    sup = health.supervisor(policy, escalate=(Deposed, LostLeadership))
    sup.start("outbox-relay", relay.run)
    sup.start("heartbeats", lambda: sink.run(HEARTBEAT_FLUSH_S))
    sup.start("worker", placer.worker)
    sup.start("resync", placer.resync_loop)
    sup.start("liveness", lambda: placer.liveness_loop(nc, ears))
    sup.start("deploy-requests", lambda: bus.pull_loop(
        js, subjects.PLACER, placer.handle_batch, policy=policy, max_deliver=common.max_deliver,
        dead_letters=deadletters.Recorder(pool, source="placer"), declare_streams=b.declare_streams))
    sup.start("leadership", leadership.watch, restart=False)
    health.detail.update(role="leader", fence=token)
    try:
        await sup.wait()
    finally:
        await sup.cancel()
        await feed.unsubscribe()
        # A standby runs none of the leader's loops: they are not dead, just not ours now.
        for name in ("outbox-relay", "heartbeats", "worker", "resync", "liveness", "deploy-requests", "leadership"):
            health.loops.states.pop(name, None)
        health.detail.update(role="standby")


async def main(settings: PlacerSettings) -> None:
    health = Health()
    common = settings.common
    policy = retry.Policy.from_settings(common)
    ops = health.supervisor(policy)
    ops.start("ops", lambda: run_ops_server(health, settings.http, settings.port), restart=False)
    b = await connect_backends(common, "placer")
    queries = db.Queries("placer")
    holder = f"{socket.gethostname()}:{settings.port}"
    leadership = Leadership(db.dsn_of(common), queries, holder, retry_max_s=common.connect_retry_max_s)
    health.ready = True
    health.detail.update(role="standby")
    try:
        while True:
            token = await leadership.acquire()
            try:
                await lead(settings, b, queries, leadership, health, token, policy)
            except (LostLeadership, Deposed) as exc:
                log.warning("stepping down", extra={"reason": str(exc)})
                await leadership.release()
            else:
                # A leader's loop ended without error (none should): step down rather than lead
                # with a part missing; the next acquire starts them all again.
                log.error("a leader loop ended; stepping down")
                await leadership.release()
    finally:
        await ops.cancel()
        await leadership.release()
        await b.nc.close()
        await b.pool.close()


def run() -> None:
    run_service("placer", lambda: load(PlacerSettings), main)  # type: ignore[arg-type]
