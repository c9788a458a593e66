"""Placement messages: one per host, in order, chunked by count and by size."""
from __future__ import annotations

import pytest

from libs import messages, subjects
from services.placer import outgoing


def _spec(env_bytes: int = 0) -> messages.ContainerSpec:
    return messages.ContainerSpec(image="noops/base:latest", cmd=["true"], env={"BIG": "x" * env_bytes},
                                  labels={}, cpus=0.1, mem_mb=32, ports=[])


def _placements(host: str, n: int, spec: messages.ContainerSpec) -> list[messages.Placement]:
    return [messages.Placement(instance=f"web-{k}", app="web", version=1, host=host, epoch=1, action="start",
                               spec=spec) for k in range(n)]


def test_one_message_per_host_in_order() -> None:
    spec = _spec()
    ps = _placements("h1", 3, spec) + _placements("h2", 2, spec)
    out = outgoing.per_host(ps)
    assert [(s, len(m.items)) for s, _, m in out] == [(subjects.place("h1"), 3), (subjects.place("h2"), 2)]
    assert [p.instance for p in out[0][2].items] == ["web-0", "web-1", "web-2"]
    assert len({msg_id for _, msg_id, _ in out}) == 2


@pytest.mark.parametrize("n, env_bytes, expect", [
    (messages.PLACEMENTS_PER_MESSAGE * 2 + 1, 0, [messages.PLACEMENTS_PER_MESSAGE] * 2 + [1]),   # by count
    (10, 100 * 1024, [2, 2, 2, 2, 2]),                                                          # by size
    (1, 2 * outgoing.MAX_MESSAGE_BYTES, [1]),          # one placement bigger than the limit still goes
], ids=["count", "size", "oversized-alone"])
def test_chunks(n: int, env_bytes: int, expect: list[int]) -> None:
    out = outgoing.per_host(_placements("h1", n, _spec(env_bytes)))
    assert [len(m.items) for _, _, m in out] == expect
    assert all(len(messages.encode(m)) <= outgoing.MAX_MESSAGE_BYTES for _, _, m in out if len(m.items) > 1)


def test_placements_are_announced_per_app_and_version_in_bounded_columns() -> None:
    n = messages.PLACED_PER_MESSAGE
    starts = [("a", f"a-{k:012x}", f"h{k % 3}", 1, 2) for k in range(n + 1)] + [("b", "b-000000000000", "h1", 4, 1)]
    items = outgoing.placed_events(starts, at=5.0)
    assert [(s, m.placed.version, len(m.placed.instances)) for s, _, m in items] == [
        ("noops.instance.a", 2, n), ("noops.instance.a", 2, 1), ("noops.instance.b", 1, 1)]
    changes = [c for _, _, m in items[:2] for c in m.changes()]
    assert [c.instance for c in changes] == [f"a-{k:012x}" for k in range(n + 1)]
    assert (changes[4].host, changes[4].state, changes[4].reason, changes[4].at, changes[4].app) == (
        "h1", "PENDING", "placed", 5.0, "a")
    (b,) = items[2][2].changes()
    assert (b.epoch, b.version, b.desired, b.health, b.ip) == (4, 1, "RUNNING", None, "")
    assert len({msg_id for _, msg_id, _ in items}) == 3
    # Columns, not items: the bytes of 1,000 placements stay small.
    assert len(messages.encode(items[0][2])) < 50 * n
