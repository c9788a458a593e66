"""The placer's heartbeat subscription against a real NATS server: with the fast path (nats-py's
per-message hook wrapped) and without, heartbeats reach the sink; a malformed or misaddressed
one is refused without hurting the connection; the connection's other subscriptions still get
theirs; unsubscribing puts nats-py's own hook back."""
from __future__ import annotations

import time

import pytest

from libs import bus, db, messages, subjects
from services.placer import heartbeat_feed
from services.placer.heartbeats import HeartbeatSink
from tests.support.wait import eventually


async def _until(cond, what: str, timeout_s: float = 5.0) -> None:
    await eventually(cond, timeout=timeout_s, interval=0.02, what=what)


def _hb(host: str) -> bytes:
    return messages.encode(messages.Heartbeat(host=host, cpus=8, mem_mb=4096, labels={}, instances=0, load1=0.1,
                                              at=time.time()))


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "ordinary path"])
async def test_heartbeats_reach_the_sink_and_nothing_else_changes(cluster_cfg, nc, pool, uid, fast: bool) -> None:
    own = await bus.connect(cluster_cfg.nats_url, f"test-hb-{uid}", **cluster_cfg.nats_credentials("admin"))
    try:
        async def nothing(_hosts: list[str]) -> None:
            return None

        sink = HeartbeatSink(pool, db.Queries("placer"), on_new_host=lambda _h: None, on_host_back=nothing)
        feed = await heartbeat_feed.subscribe(own, sink, fast=fast)
        assert feed.fast is fast
        other: list[bytes] = []

        async def on_other(msg) -> None:
            other.append(msg.data)

        other_subject = f"test.hbfeed.{uid}"
        await own.subscribe(other_subject, cb=on_other)
        await own.flush()

        hosts = [f"hbf-{uid}-{k}" for k in range(3)]
        for h in hosts:
            await nc.publish(subjects.heartbeat(h), _hb(h))
        await nc.publish(subjects.heartbeat(f"hbf-{uid}-bad"), b"{not json")                  # malformed
        await nc.publish(subjects.heartbeat(f"hbf-{uid}-x"), _hb(f"hbf-{uid}-y"))            # misaddressed
        await nc.publish(other_subject, b"still here")
        await nc.flush()
        await _until(lambda: set(hosts) <= set(sink.latest) and other == [b"still here"], "the heartbeats")
        assert set(sink.latest) == set(hosts)            # the bad two were refused
        # nats-py counts what it delivered itself: the fast path's heartbeats never went through it.
        assert own.stats["in_msgs"] == (1 if fast else 6)
        assert set(hosts) <= set(sink.ears.heard)

        await feed.unsubscribe()
        assert "_process_msg" not in vars(own)           # nats-py's own hook again
        sink.latest.clear()
        await nc.publish(subjects.heartbeat(hosts[0]), _hb(hosts[0]))
        await nc.publish(other_subject, b"after")
        await nc.flush()
        await _until(lambda: other == [b"still here", b"after"], "the other subscription")
        assert sink.latest == {}
    finally:
        await own.close()
