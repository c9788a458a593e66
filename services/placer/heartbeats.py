"""Heartbeats from hostd (core NATS, lossy by design) are folded in memory and written to the
hosts table once per interval, whatever the number of hosts: hosts whose heartbeat changed
(capacity, labels, instances, ports...) in one upsert, the others -- most of them, most of the
time -- in one narrow update of last_seen and load."""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge

from libs import messages, subjects
from libs.db import Queries
from services.placer import silence

log = logging.getLogger("noops.placer.heartbeats")

RECEIVED = Counter("noops_placer_heartbeats_total", "Heartbeats received")
REJECTED = Counter("noops_placer_heartbeats_rejected_total", "Heartbeats refused (malformed or wrong subject)")
HOSTS = Gauge("noops_placer_hosts_reporting", "Hosts heard from in the last flush interval")


_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(messages.Heartbeat).decode   # messages.decode's, without its lookup per call


def _json(value: dict) -> str:
    # msgspec: several times faster than json.dumps, and this runs for every host every second.
    return _encode.encode(value).decode()


class HeartbeatSink:
    def __init__(self, pool: asyncpg.Pool, queries: Queries, on_new_host: Callable[[list[str]], None],
                 on_host_back: Callable[[list[str]], Awaitable[None]], ears: silence.Ears | None = None,
                 clock: Callable[[], float] = time.monotonic, *, grace_s: float = 3.0) -> None:
        self.pool, self.q, self.on_new_host, self.on_host_back = pool, queries, on_new_host, on_host_back
        self.ears = silence.Ears() if ears is None else ears
        self._clock = clock
        self.grace_s = grace_s                   # NOOPS_HEARTBEAT_GRACE_S: older than that, a host is not offered room
        self.latest: dict[str, messages.Heartbeat] = {}
        self._written_at: dict[str, float] = {}  # host -> when its heartbeat last reached the table (clock)
        self._written: dict[str, bytes] = {}   # host -> what its row holds (heartbeat less time and load)
        self._received = 0

    async def handle(self, msg: Msg) -> None:
        self.hear(msg.subject, msg.data)

    def hear(self, subject: str, data: bytes) -> None:
        """One heartbeat as it came (heartbeat_feed.py calls this in nats-py's read loop)."""
        try:
            hb = _decode(data)
        except messages.DecodeError as exc:
            REJECTED.inc()
            log.warning("malformed heartbeat", extra={"subject": subject, "error": str(exc)})
            return
        if hb.host != subjects.host_of(subject):
            REJECTED.inc()
            log.warning("heartbeat for another host", extra={"subject": subject, "host": hb.host})
            return
        self.latest[hb.host] = hb
        self.ears.hear(hb.host, self._clock())   # heard now, whenever the task log gets to know
        self._received += 1  # added to the metric at flush: one update per interval, not per message

    async def flush(self) -> int:
        batch, self.latest = self.latest, {}
        try:
            return await self._write(batch)
        except BaseException:
            # Not written: kept for the next flush, under anything newer heard meanwhile.
            self.latest = {**batch, **self.latest}
            raise

    async def _write(self, batch: dict[str, messages.Heartbeat]) -> int:
        now = self._clock()
        HOSTS.set(len(batch))
        RECEIVED.inc(self._received)
        self._received = 0
        if not batch:
            return 0
        changed, same = [], []
        for h in batch.values():
            key = _encode.encode(msgspec.structs.replace(h, at=0.0, load1=0.0))
            if self._written.get(h.host) == key:
                same.append(h)
            else:
                changed.append((h, key))
        back: list[str] = []
        gone: list[str] = []
        if changed:
            hbs = [h for h, _ in changed]
            back += [r["id"] for r in await self.pool.fetch(
                self.q.upsert_hosts, [h.host for h in hbs], [h.cpus for h in hbs], [h.mem_mb for h in hbs],
                [_json(h.labels) for h in hbs], [h.load1 for h in hbs], [h.instances for h in hbs],
                [_json(h.disk_free_mb) for h in hbs], [h.addresses_free for h in hbs], [h.egress_mbit for h in hbs],
                [h.ipam for h in hbs], [",".join(map(str, h.ports_listening)) for h in hbs])]
            self._written.update((h.host, key) for h, key in changed)
        if same:
            for r in await self.pool.fetch(self.q.touch_hosts, [h.host for h in same], [h.load1 for h in same]):
                if r["back"]:
                    back.append(r["id"])
                else:
                    self._written.pop(r["id"], None)   # its row is gone: written in full next time
                    gone.append(r["id"])
        if back:
            await self.on_host_back(back)
        # A host this placer never wrote, or whose last write is older than the grace (so the
        # snapshot stopped offering it room), is new or back: capacity appeared, so apps waiting
        # for room are looked at again.  Not a host merely missing from the last interval: under
        # load a heartbeat round or a flush runs late, and every such "appearance" had every app
        # looked at again (all their live instances re-read) for no new room.
        written_at = self._written_at
        new = sorted({*(h for h in batch if now - written_at.get(h, -math.inf) > self.grace_s), *back})
        written_at.update(dict.fromkeys(batch, now))
        for h in gone:
            written_at.pop(h, None)                    # not in the table: new again once it is
        if new:
            log.info("hosts reporting", extra={"hosts": new})
            self.on_new_host(new)
        return len(batch)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("could not record heartbeats; retrying", extra={"error": str(exc) or type(exc).__name__})
