"""silence.judge: which silent hosts are marked DOWN, and when none may be."""
from __future__ import annotations

import pytest

from services.placer.silence import Ears, Policy, judge

P = Policy(lost_after_s=10.0, mass_silence_share=0.55, eviction_rate_per_s=0.5, eviction_burst=3.0)


def ears(heard: dict[str, float], since: float | None = 0.0) -> Ears:
    return Ears(heard=dict(heard), listening_since=since)


CASES = [
    # (id, heard, listening_since, now, tokens, expected down, held contains)
    ("all-heard", {"a": 99.0, "b": 99.5, "c": 100.0}, 0.0, 100.0, 3.0, (), ""),
    ("one-silent", {"a": 80.0, "b": 99.5, "c": 100.0}, 0.0, 100.0, 3.0, ("a",), ""),
    ("just-under-threshold", {"a": 90.0, "b": 99.5}, 0.0, 100.0, 3.0, (), ""),
    ("deaf-placer", {"a": 10.0, "b": 10.0}, None, 100.0, 3.0, (), "not connected"),
    ("reconnected-recently", {"a": 10.0, "b": 99.0, "c": 99.0}, 95.0, 100.0, 3.0, (), ""),
    ("reconnected-long-ago", {"a": 10.0, "b": 99.0, "c": 99.0}, 85.0, 100.0, 3.0, ("a",), ""),
    ("everyone-silent", {"a": 10.0, "b": 10.0, "c": 10.0}, 0.0, 100.0, 3.0, (), "3 of 3 hosts silent"),
    ("most-silent", {"a": 10.0, "b": 10.0, "c": 99.0}, 0.0, 100.0, 3.0, (), "2 of 3 hosts silent"),
    ("half-of-two-silent", {"a": 10.0, "b": 99.0}, 0.0, 100.0, 3.0, ("a",), ""),
    ("single-host-silent", {"a": 10.0}, 0.0, 100.0, 3.0, (), "1 of 1 hosts silent"),
    ("rate-limited-longest-silent-first", {"a": 50.0, "b": 40.0, "c": 60.0, **{f"h{i}": 99.0 for i in range(7)}},
     0.0, 100.0, 2.0, ("b", "a"), "eviction rate limit"),
    ("no-tokens", {"a": 50.0, "b": 99.0, "c": 99.0}, 0.0, 100.0, 0.0, (), "eviction rate limit"),
]


@pytest.mark.parametrize("heard,since,now,tokens,down,held", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_judge(heard, since, now, tokens, down, held):
    v = judge(ears(heard, since), now, P, tokens, last_now=now)
    assert v.down == down
    assert held in v.held
    if not held:
        assert v.held == ""


def test_bucket_refills_at_the_rate_up_to_the_burst():
    e = ears({"a": 0.0, "b": 0.0, "c": 0.0, **{f"h{i}": 100.0 for i in range(7)}})
    v = judge(e, 100.0, P, tokens=0.0, last_now=98.0)     # 2 s at 0.5/s: one token
    assert v.down == ("a",) and v.tokens == pytest.approx(0.0)
    v = judge(e, 100.0, P, tokens=0.0, last_now=0.0)      # 100 s: capped at the burst
    assert v.down == ("a", "b", "c") and v.tokens == pytest.approx(0.0)


def test_ears_keep_the_newest_and_forget_the_marked():
    e = Ears()
    e.watch(["a", "b"], 5.0)
    e.hear("a", 7.0)
    e.watch(["a"], 9.0)          # watching does not make an older hearing of "a" newer
    assert e.heard == {"a": 7.0, "b": 5.0}
    e.forget(["b"])
    assert e.heard == {"a": 7.0}
    e.listening(1.0)
    e.listening(3.0)             # already listening: the first time stays
    assert e.listening_since == 1.0
    e.deaf()
    assert e.listening_since is None
