"""The FLOOR under the fan-out goal: the least a registry could do per report batch, as its own
process, run by ``bench.fanout_latency --registry floor`` in place of the real one
(bench/fanout_registry.py) with the same generator, NATS server, stream, consumer, database
and HAProxy.  Not noops' registry and not a mock of it: a yardstick for what this machine
allows, whatever the registry's code.

Per batch it pulls the reports (the real ``REGISTRY`` consumer, ``bus.Puller``), decodes only
instance, app and address, records them in one statement (the instances' new state and one
event each, nothing else), acks each report, then adds and enables one HAProxy server per
report in one Runtime API session.  What the real registry does besides -- screening and
judging each report against the task log, endpoint announcements, the change events on NATS
(outbox), the re-read of the in-service set the sinks get, nftables -- is left out, so every
latency here is a lower bound for the registry's.

    python -m bench.floor_registry --out DIR --expect N      (started by bench.fanout_latency)

Writes DIR/ready once HAProxy has a frontend per app, DIR/done.json like bench/fanout_registry.py
(the "nft" time is HAProxy's: there is no nft step).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import msgspec

from libs import bus, subjects
from libs.service import connect_backends
from libs.settings import RegistrySettings, load
from services.registry.sinks import haproxy as hx
from services.registry.sinks.haproxy_config import Frontend, Paths, render

# One statement per batch: the instances' new state and their events.
RECORD = """
WITH t AS (SELECT * FROM unnest($1::text[], $2::text[]) AS t(id, ip)),
applied AS (UPDATE instances i SET state = 'RUNNING', ip = t.ip, updated_at = now() FROM t
            WHERE i.id = t.id AND i.state <> 'RUNNING' RETURNING i.id)
INSERT INTO instance_events (instance, state, reason, source) SELECT id, 'RUNNING', '', 'registry' FROM applied
"""


class Report(msgspec.Struct):
    """What the floor reads of a report (the rest is skipped, not decoded)."""
    instance: str
    app: str
    ip: str = ""


async def _frontends(paths: Paths, ports: dict[str, int], timeout_s: float = 30.0) -> None:
    """A frontend and backend per app (one reload), as the real registry has them before the clock starts."""
    paths.config.write_text(render(paths, [Frontend(p, "127.0.0.1", a, "http") for a, p in ports.items()], {}))
    await hx.runtime(paths.master_socket, "reload")
    last = f"p{max(ports.values())}" if ports else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if last in await hx.runtime(paths.admin_socket, "show backend"):
                return
        except hx.HAProxyError:
            pass   # the new worker is starting
        await asyncio.sleep(0.05)
    raise TimeoutError(f"HAProxy did not load {len(ports)} frontends within {timeout_s:.0f} s")


async def serve(out: Path, expect: int) -> None:
    settings = load(RegistrySettings)
    b = await connect_backends(settings.common, "registry")
    paths = Paths(Path(settings.haproxy_dir))
    lo = settings.lb_port_range()[0]
    apps = [r["id"] for r in await b.pool.fetch("SELECT id FROM apps ORDER BY id")]
    ports = {a: lo + i for i, a in enumerate(apps)}
    await _frontends(paths, ports)
    await bus.ensure_consumer(b.js, subjects.REGISTRY)
    puller = bus.Puller(b.js, subjects.REGISTRY)
    await puller.start()
    decode = msgspec.json.Decoder(Report).decode
    times: dict[str, list[float]] = {}
    slots = asyncio.Semaphore(settings.report_batches_in_flight)
    haproxy_turn = asyncio.Lock()   # one Runtime API session at a time, as the real sink
    tasks: set[asyncio.Task[None]] = set()
    (out / "ready").write_text("floor")

    async def process(msgs: list) -> None:
        try:
            reports = [decode(m.data) for m in msgs]
            await b.pool.execute(RECORD, [r.instance for r in reports], [r.ip for r in reports])
            committed = time.monotonic()
            for m in msgs:
                await m.ack()
            commands = []
            for r in reports:
                ref = f"p{ports[r.app]}/{r.instance}"
                commands += [f"add server {ref} {r.ip}:8080", f"enable server {ref}"]
            async with haproxy_turn:
                await hx.runtime_batch(paths.admin_socket, commands)
            held = time.monotonic()
            for r in reports:
                times[r.instance] = [committed, held, held]
            if len(times) >= expect:
                tmp = out / "done.json.new"
                tmp.write_text(json.dumps({"names": ["commit", "haproxy", "nft"], "complete": len(times), "times": times}))
                tmp.replace(out / "done.json")
        finally:
            slots.release()

    while True:
        await slots.acquire()
        try:
            msgs = await puller.fetch(1000, timeout=1.0)
        except Exception:
            slots.release()
            continue
        task = asyncio.create_task(process(msgs))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--expect", required=True, type=int)
    args = p.parse_args()
    asyncio.run(serve(args.out, args.expect))


if __name__ == "__main__":
    main()
