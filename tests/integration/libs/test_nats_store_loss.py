"""A NATS server that comes back without its store (wiped disk): the pull loop declares its
consumer and the streams again and receives what is published after, within a deadline.
A throwaway server of its own (temp store, free port), stopped by its PID: the session's
server is left alone."""
from __future__ import annotations

import asyncio
import contextlib
import shutil

import pytest_asyncio

from devtools import infra
from libs import bus, messages, retry, subjects
from tests.support.wait import eventually


@pytest_asyncio.fixture
async def throwaway_nats(tmp_path):
    port, monitor = infra.free_ports(2)
    store = tmp_path / "store"
    argv = ["nats-server", "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)]

    def start() -> int:
        store.mkdir(parents=True, exist_ok=True)
        pid = infra.spawn(argv, pidfile=tmp_path / "nats.pid", logfile=tmp_path / "nats.log")
        infra.wait_until(lambda: infra.http_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"), 30, "NATS")
        return pid

    state = {"pid": start()}

    def restart_wiped() -> None:
        infra.stop_pid(state["pid"])
        shutil.rmtree(store)
        state["pid"] = start()

    try:
        yield f"nats://127.0.0.1:{port}", restart_wiped
    finally:
        infra.stop_pid(state["pid"])


async def test_pull_loop_recovers_from_a_server_that_lost_its_store(throwaway_nats, uid):
    url, restart_wiped = throwaway_nats
    nc = await bus.connect(url, "store-loss")
    js = nc.jetstream()
    streams = [subjects.ENDPOINTS]
    await bus.ensure_streams(js, streams)
    app = f"wipe-{uid}"
    consumer = subjects.Consumer(subjects.ENDPOINTS, f"wipe-{uid}", subjects.endpoints(app))
    seen: list[int] = []

    async def handler(msgs):
        seen.extend(messages.decode(m.data, messages.EndpointsChanged).seq for m in msgs)
        return [bus.ACK] * len(msgs)

    def payload(k: int) -> bytes:
        return messages.encode(messages.EndpointsChanged(app=app, endpoints=[], seq=k))

    stop = asyncio.Event()
    loop = asyncio.create_task(bus.pull_loop(js, consumer, handler, stop=stop, policy=retry.Policy(0.05, 0.5),
                                             declare_streams=lambda: bus.ensure_streams(js, streams)))
    try:
        await js.publish(subjects.endpoints(app), payload(1))
        await eventually(lambda: 1 in seen, timeout=10, what="the first message")
        restart_wiped()

        async def published() -> bool:   # the stream exists again once the loop declared it
            try:
                await js.publish(subjects.endpoints(app), payload(2), timeout=1)
            except Exception:
                return False
            return True
        await eventually(published, timeout=30, interval=0.2, what="the stream declared again by the loop")
        await eventually(lambda: 2 in seen, timeout=15, what="the message published after the wipe")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop, 10)
        loop.cancel()
        await nc.close()
