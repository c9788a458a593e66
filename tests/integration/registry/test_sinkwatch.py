"""Read back and repair against the real sinks: what ``observe`` reports is what HAProxy and nftables
hold (changes made by hand included), and a repair makes the sink forget its cache and converge
again; over real NATS, with a real fan-out reading the real task log."""
from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from libs import bus, db, messages, retry, subjects
from libs.messages import Endpoint, SinkView
from services.registry.sinks import haproxy_config as hc
from services.registry.sinks.fanout import Fanout
from services.registry.sinks.haproxy import HAProxyOptions, HAProxySink, runtime_batch
from services.registry.sinks.haproxy_config import Paths
from services.registry.sinks.model import AppState, Desired, LbPort
from services.registry.sinks.nft import NftSink, set_name
from services.registry.sinks.runner import SinkRunner
from services.registry.sinkwatch import SinkWatch
from tests.support.wait import eventually

FAST = retry.Policy(base_s=0.05, cap_s=0.2)


def web(port: int, *ips: str) -> Desired:
    return {"web": AppState("web", tuple(Endpoint(instance=f"web-{i}", host="h1", ip=ip, ports={"http": 80})
                                         for i, ip in enumerate(ips, 1)), {"http": LbPort("127.0.0.1", port)})}


async def by_hand(paths: Paths, *commands: str) -> None:
    """Runtime API commands behind the sink's back (an operator, another tool)."""
    for cmd, answer in zip(commands, await runtime_batch(paths.admin_socket, list(commands))):
        assert hc.ok_answer(cmd, answer), (cmd, answer)


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


class Counted:
    """A runner with a count of its successful steps, so a test knows an application finished
    (``idle`` turns true when a step takes its work, before the sink holds it)."""

    def __init__(self, sink) -> None:  # type: ignore[no-untyped-def]
        self.done = 0
        self.runner = SinkRunner(sink, backoff=FAST, observers=(self._seen,))
        self.task = asyncio.create_task(self.runner.run())

    def _seen(self, name: str, work: Desired, at: float) -> None:
        self.done += 1

    async def apply(self, submit, desired: Desired) -> None:  # type: ignore[no-untyped-def]
        before = self.done
        submit(desired)
        await eventually(lambda: self.done > before, timeout=10, what="application finished")


async def groups(sink) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    view = await sink.observe()
    assert view.ok, view.error
    return view.groups


async def test_haproxy_observe_is_what_haproxy_holds(make_sink, port_range, haproxy):
    sink = make_sink(spare=1)
    lo = port_range[0]
    await sink.apply_full(web(lo, "198.18.7.1", "198.18.7.2"))
    assert await sink.observe() == SinkView(sink="haproxy", ok=True, groups={
        str(lo): ["web-1 198.18.7.1:80", "web-2 198.18.7.2:80"], str(lo + 1): []})   # lo + 1: the spare
    await by_hand(haproxy, f"add server p{lo}/x 198.18.7.9:80", f"enable server p{lo}/x",
                  f"set server p{lo}/web-2 state maint")
    assert await groups(sink) == {str(lo): ["web-1 198.18.7.1:80", "x 198.18.7.9:80"], str(lo + 1): []}


async def test_haproxy_repair_removes_the_hand_added_and_restores_the_removed(make_sink, port_range, haproxy):
    sink = make_sink(spare=1)
    lo = port_range[0]
    desired = web(lo, "198.18.7.1", "198.18.7.2")
    want = {str(lo): ["web-1 198.18.7.1:80", "web-2 198.18.7.2:80"], str(lo + 1): []}
    c = Counted(sink)
    try:
        await c.apply(c.runner.submit_full, desired)
        assert await groups(sink) == want
        await by_hand(haproxy, f"add server p{lo}/x 198.18.7.9:80", f"enable server p{lo}/x",
                      f"set server p{lo}/web-1 state maint", f"del server p{lo}/web-1")
        drifted = {str(lo): ["web-2 198.18.7.2:80", "x 198.18.7.9:80"], str(lo + 1): []}
        assert await groups(sink) == drifted
        await c.apply(c.runner.submit, desired)     # a plain update trusts the cache: nothing changes
        assert await groups(sink) == drifted
        await c.apply(c.runner.submit_repair, desired)
        assert await groups(sink) == want
    finally:
        c.task.cancel()


@pytest_asyncio.fixture
async def nft_sink() -> AsyncIterator[NftSink]:
    """libnftables in this process (the registry's default), a table of the test's own."""
    sink = NftSink(f"noops_t{uuid.uuid4().hex[:6]}")
    try:
        yield sink
    finally:
        await sink.delete_table()
        await sink.close()


async def test_nft_observe_and_repair_of_elements_changed_by_hand(nft_sink):
    sink = nft_sink
    assert await sink.observe() == SinkView(sink="nft", ok=True)      # no table yet: holds nothing
    desired = web(1, "198.18.253.2", "198.18.253.3")
    c = Counted(sink)
    try:
        await c.apply(c.runner.submit_full, desired)
        assert await groups(sink) == {"web": ["198.18.253.2", "198.18.253.3"]}
        sh("nft", "delete", "element", "inet", sink.table, set_name("web"), "{ 198.18.253.2 }")
        sh("nft", "add", "element", "inet", sink.table, set_name("web"), "{ 198.18.253.77 }")
        drifted = {"web": ["198.18.253.3", "198.18.253.77"]}
        assert await groups(sink) == drifted
        await c.apply(c.runner.submit, desired)     # the diff against what it believes is empty
        assert await groups(sink) == drifted
        await c.apply(c.runner.submit_repair, desired)
        assert await groups(sink) == {"web": ["198.18.253.2", "198.18.253.3"]}
    finally:
        c.task.cancel()


async def test_an_unreadable_sink_is_reported_and_the_others_still_answer(nft_sink, tmp_path, port_range):
    gone = HAProxySink(HAProxyOptions(paths=Paths(tmp_path / "no-haproxy"), port_range=port_range))
    await nft_sink.apply_full(web(1, "198.18.253.5"))
    got = await SinkWatch([SinkRunner(gone), SinkRunner(nft_sink)], None).observe()
    assert [(v.sink, v.ok) for v in got.sinks] == [("haproxy", False), ("nft", True)]
    assert "not answering" in got.sinks[0].error
    assert got.sinks[1].groups == {"web": ["198.18.253.5"]}


@pytest_asyncio.fixture
async def as_service(cluster_cfg):  # type: ignore[no-untyped-def]
    """NATS connections under the services' own identities (libs/natsauth.py), closed at the end."""
    made = []

    async def connect(name: str):  # type: ignore[no-untyped-def]
        nc = await bus.connect(cluster_cfg.nats_url, f"test-{name}", **cluster_cfg.nats_credentials(name))
        made.append(nc)
        return nc
    yield connect
    for nc in made:
        await nc.close()


async def ask_observe(nc) -> dict[str, SinkView]:  # type: ignore[no-untyped-def]
    reply = await nc.request(subjects.SINKS_OBSERVE, b"", timeout=5)
    return {v.sink: v for v in messages.decode(reply.data, messages.SinksObserved).sinks}


async def ask_repair(nc, body: bytes) -> messages.SinksRepair:  # type: ignore[no-untyped-def]
    reply = await nc.request(subjects.SINKS_REPAIR, body, timeout=5)
    return messages.decode(reply.data, messages.SinksRepair)


async def test_observe_and_repair_over_nats(pool, rows, uid, make_sink, port_range, haproxy, nft_sink, as_service):
    app = f"sw-{uid}"
    await rows.app(app, {"http": 80})
    await rows.instance(app, f"{app}-1", "198.18.252.1")
    await rows.instance(app, f"{app}-2", "198.18.252.2")
    runners = [SinkRunner(make_sink(spare=1), backoff=FAST), SinkRunner(nft_sink, backoff=FAST)]
    # No periodic resync during the test: only the repair may correct the drift.
    fanout = Fanout(pool, db.Queries("registry"), runners, lb_bind_host="127.0.0.1", lb_port_range=port_range,
                    resync_s=3600)
    watch = SinkWatch(runners, fanout.read, policy=FAST)
    registry, reconciler = await as_service("registry"), await as_service("reconciler")
    subs = await watch.serve(registry)
    tasks = [asyncio.create_task(c) for c in (fanout.run(), watch.run(), *(r.run() for r in runners))]
    servers = [f"{app}-1 198.18.252.1:80", f"{app}-2 198.18.252.2:80"]

    def holds(views: dict[str, SinkView], port: str, haproxy_servers: list[str], ips: list[str]) -> bool:
        return views["haproxy"].groups.get(port) == haproxy_servers and views["nft"].groups.get(app) == ips

    try:
        async def lb_port() -> str | None:   # the backend the fan-out gave the app (lowest free port)
            views = await ask_observe(reconciler)
            ports = [p for p, s in views["haproxy"].groups.items() if s == servers]
            return ports[0] if ports and views["nft"].groups.get(app) else None
        port = await eventually(lb_port, timeout=10, what="first full apply")
        drifted = [*servers, "x 198.18.7.9:80"]

        async def added_by_hand() -> bool:
            if (await ask_observe(reconciler))["haproxy"].groups.get(port) == drifted:
                return True
            # Until the worker that answers holds it: right after the first apply's reload (a new
            # frontend), the old worker may still answer on the admin socket, and it goes away
            # with what it was told.
            await runtime_batch(haproxy.admin_socket, [f"add server p{port}/x 198.18.7.9:80", f"enable server p{port}/x"])
            return False
        await eventually(added_by_hand, timeout=10, what="the server added by hand in HAProxy's worker")
        sh("nft", "delete", "element", "inet", nft_sink.table, set_name(app), "{ 198.18.252.2 }")
        assert holds(await ask_observe(reconciler), port, drifted, ["198.18.252.1"])

        assert await ask_repair(reconciler, b"{") == messages.SinksRepair(repairs={})
        got = await ask_repair(reconciler, messages.encode(messages.SinksRepair(
            repairs={"haproxy": [app], "nft": [app], "bogus": [app]})))
        assert got == messages.SinksRepair(repairs={"haproxy": [app], "nft": [app]})
        await eventually(lambda: _with(ask_observe(reconciler),
                                       lambda v: holds(v, port, servers, ["198.18.252.1", "198.18.252.2"])),
                         timeout=10, what="both sinks repaired")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in subs:
            await s.unsubscribe()


async def _with(aw, pick):  # type: ignore[no-untyped-def]
    value = await aw
    return value if pick(value) else None


async def test_without_sinks_observe_answers_an_empty_list(as_service):
    registry, reconciler = await as_service("registry"), await as_service("reconciler")
    subs = await SinkWatch([], None).serve(registry)
    try:
        assert await ask_observe(reconciler) == {}
        got = await ask_repair(reconciler, messages.encode(messages.SinksRepair(repairs={"nft": ["web"]})))
        assert got.repairs == {}
    finally:
        for s in subs:
            await s.unsubscribe()

