"""Announces the apps whose in-service set changed, coalesced: report batches only mark an app
changed (libs/endpoints.mark_changed, in their own transaction); this loop, woken after each
commit, writes one EndpointsChanged per marked app to the outbox in one transaction.  While one
round runs, further batches mark more apps, and the next round announces them all at once, so
under load a big app's set is read once per round instead of once per batch; when traffic is
light a round follows each batch at once.  A slow poll covers marks left by a crashed process.

The same transaction asks the placer to look at each announced app again (a DeployRequest): an
instance came into service (the next rolling-update step may be due, the deployment may be
done) or left it.  Once a round, not once per report batch: each look re-reads all the app's
live instances.  Instances that end while wanted are asked for by the report batch itself, at
once (records.py).

    report batch commits ──kick──> take marks, read sets, outbox: EndpointsChanged + DeployRequest
                                   (one transaction) ──kick──> relay
"""
from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
from prometheus_client import Counter

from libs import endpoints, messages, outbox, retry, subjects
from libs.service import Pacer

log = logging.getLogger("noops.registry")

PUBLISHED = Counter("noops_registry_endpoint_events_total", "EndpointsChanged events written")
LOOK_REASON = "in-service set changed"


class Announcer:
    def __init__(self, pool: asyncpg.Pool, relay: outbox.Relay, *, poll_s: float = 1.0,
                 min_gap_s: float = 0.05, busy_share: float = 0.125, policy: retry.Policy = retry.DEFAULT) -> None:
        # min_gap_s: rounds start at most this often.  A round per report batch (hundreds a
        # second under load) competed with the batches themselves for the process and the task
        # log; the sinks do not wait for announcements (the fan-out reads after each commit), so
        # subscribers see a change at most this much later, with more changes per event.
        # busy_share: and at most so often that rounds take this share of the time.  A round
        # re-reads the whole set of every marked app, so while big apps come up its cost grows
        # with them (100,000 instances: ~100 rounds read 380,000 rows); spacing rounds by their
        # cost lets one round carry more batches' changes (NOOPS_REGISTRY_ANNOUNCE_BUSY_SHARE).
        # 0: rounds as often as min_gap_s allows.
        self.pool, self.relay, self.poll_s, self.policy = pool, relay, poll_s, policy
        self.min_gap_s, self.busy_share = min_gap_s, busy_share
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        failures = retry.Failures(self.policy)
        # Never longer apart than the slow poll: a round's cost spaces rounds, not beyond that.
        pacer = Pacer(self.min_gap_s, self.busy_share, max_gap_s=self.poll_s)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            await pacer.wait()
            # Cleared before the round: a kick during the round means marks this round may not see.
            self._wake.clear()
            try:
                await self.announce_once()
                pacer.done()
                failures.ok()
            except retry.TRANSIENT as exc:   # the task log is away: the marks stay, back off
                delay = failures.failed()
                log.warning("announcing endpoints failed; retrying", extra={"error": retry.describe(exc),
                                                                           "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)
                self._wake.set()

    async def announce_once(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            out = await endpoints.announce_changed(conn)
            looks = [(subjects.deploy(m.app), f"deploy:{m.app}:{uuid.uuid4().hex}",
                      messages.DeployRequest(app=m.app, reason=LOOK_REASON))
                     for _, _, m in out if isinstance(m, messages.EndpointsChanged)]
            await outbox.enqueue(conn, [*out, *looks])
        if out:
            PUBLISHED.inc(len(out))
            self.relay.kick()
        return len(out)
