"""Hollow hosts: a SIMULATOR, not a host agent (the idea of Kubernetes' kubemark).

Many simulated hosts in one process.  They heartbeat like hostd (core NATS, one message per host
per interval) and acknowledge every placement at once — a start is answered with a RUNNING
container-IP report carrying a made-up address in 198.18.0.0/15, a stop with KILLED — without
creating anything.  So a benchmark measures the placer, registry and task log alone.

It consumes the whole placements stream through one durable consumer ("hollow"), which only
works on a NATS server with no real hostd attached: use it on a benchmark's own server.

What it sends is what hostd sends (the same subjects, messages, ``Nats-Msg-Id`` headers; a
report is stored by JetStream, its ack awaited, before the placement is acknowledged).  What
it does not do is spend CPU that hostd spends on a machine of its own: heartbeats are built
from a per-host template, addresses are counted as integers, and JetStream's acks are
checked for an error, not parsed into nats-py's ``PubAck`` objects (its dataclass
machinery was an eighth of this process) -- the simulator shares the benchmark's two cores
with what it measures.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

from libs import bus, messages, subjects
from libs.jspublish import AckedPublisher

log = logging.getLogger("noops.bench.hollow")

CONSUMER = subjects.Consumer(subjects.PLACEMENTS, "hollow", f"{subjects.ROOT}.place.*", ack_wait_s=60.0)
ADDRESSES = ipaddress.ip_network("198.18.0.0/15")
_BASE, _SIZE = int(ADDRESSES.network_address), ADDRESSES.num_addresses


def host_id(k: int) -> str:
    return f"hh{k:05d}"


class HollowHosts:
    def __init__(self, nc: NATS, n: int, *, cpus: float = 32.0, mem_mb: int = 131072,
                 ack_timeout_s: float = 30.0) -> None:
        self.nc, self.js, self.n, self.cpus, self.mem_mb = nc, nc.jetstream(), n, cpus, mem_mb
        self.ack_timeout_s = ack_timeout_s
        self.started = 0
        self.stopped = 0
        self._next_ip = 1
        self._acks = AckedPublisher(nc)   # the outbox relays' publisher (libs/jspublish.py)

    def labels(self, k: int) -> dict[str, str]:
        return {"hostname": host_id(k), "rack": f"r{k // 40}", "zone": f"z{k % 4}"}

    async def heartbeat_loop(self, interval_s: float = 1.0) -> None:
        # One template per host (the same heartbeat hostd would send, every field but the time).
        beats = [(subjects.heartbeat(host_id(k)),
                  messages.Heartbeat(host=host_id(k), cpus=self.cpus, mem_mb=self.mem_mb, labels=self.labels(k),
                                     instances=0, load1=0.0, at=0.0)) for k in range(self.n)]
        while True:
            t0 = time.monotonic()
            now = time.time()
            for subject, hb in beats:
                await self.nc.publish(subject, messages.encode(msgspec.structs.replace(hb, at=now)))
            await self.nc.flush()
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - t0)))

    def _ip(self) -> str:
        self._next_ip += 1
        n = _BASE + self._next_ip % _SIZE
        return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"

    async def handle(self, msgs: list[Msg]) -> list[bus.Verdict]:
        futures = []
        for p in (p for m in msgs for p in messages.decode(m.data, messages.Placements).items):
            if p.action == "start":
                self.started += 1
                r = messages.IpReport(instance=p.instance, app=p.app, host=p.host, epoch=p.epoch, state="RUNNING",
                                      container_id=f"hollow-{p.instance}", ip=self._ip(), at=time.time())
            else:
                self.stopped += 1
                r = messages.IpReport(instance=p.instance, app=p.app, host=p.host, epoch=p.epoch, state="KILLED",
                                      container_id=f"hollow-{p.instance}", at=time.time())
            futures.append(await self._acks.publish(
                subjects.report(p.host), messages.encode(r),
                msg_id=f"report:{p.instance}:{p.epoch}:{r.state}:{r.container_id}"))
        try:
            await asyncio.wait_for(asyncio.gather(*futures), self.ack_timeout_s)
        except (asyncio.TimeoutError, APIError, NoStreamResponseError) as exc:
            # Not all stored: the placements come again (a report published twice is dropped
            # by its msg id), as hostd NAKs.
            self._acks.forget(futures)
            log.warning("reports not stored; placements redelivered", extra={"error": repr(exc)})
            return [bus.nak(1.0)] * len(msgs)
        return [bus.ACK] * len(msgs)

    async def serve(self) -> None:
        await bus.pull_loop(self.js, CONSUMER, self.handle, batch=1000, concurrency=2)
