"""/v1/events decided purely (services/gateway/changes.py): ids over two streams, where a
client starts, filters, and the frames one batch message becomes."""
from __future__ import annotations

import json

import pytest

from libs import messages
from services.gateway import changes
from services.gateway.changes import Cursor, StreamSpan

EV, EP = StreamSpan(first=10, last=20), StreamSpan(first=3, last=7)


@pytest.mark.parametrize("asked, cursor, reset", [
    (None, Cursor(21, 0, 8), ""),                       # no id: live from now
    ("12.3-5", Cursor(12, 3, 5), ""),
    ("21.0-8", Cursor(21, 0, 8), ""),                   # nothing after it yet
    ("10.0-3", Cursor(10, 0, 3), ""),                   # the oldest kept
    ("9.2-5", Cursor(21, 0, 8), "too old"),            # message 9 is gone
    ("12.0-2", Cursor(21, 0, 8), "too old"),           # endpoints message 2 is gone
    ("22.0-8", Cursor(21, 0, 8), "too old"),           # after the last: a stream that started over
    ("garbage", Cursor(21, 0, 8), "unknown"),
], ids=lambda v: str(v))
def test_where_a_client_starts(asked, cursor, reset) -> None:
    got = changes.start(asked, EV, EP)
    assert got.cursor == cursor and (reset in got.reset if reset else got.reset == "")


def test_an_empty_new_stream_holds_from_its_first_sequence() -> None:
    assert changes.start("1.0-1", StreamSpan(0, 0), StreamSpan(0, 0)).reset == ""


def test_types_comma_separated_or_repeated_and_unknown_refused() -> None:
    assert changes.parse_types([]) == frozenset(changes.TYPES)
    assert changes.parse_types(["instance,host", "deployment"]) == {"instance", "host", "deployment"}
    with pytest.raises(ValueError, match="nope"):
        changes.parse_types(["instance,nope"])


def _batch(app: str, n: int) -> bytes:
    return messages.encode(messages.InstanceEvents(app=app, items=[messages.InstanceEvent(
        app=app, instance=f"{app}-{k:012x}", host="h1", state="RUNNING", health="healthy", ip="198.18.0.9", epoch=1,
        version=2, desired="RUNNING", reason="", at=1764600000.5) for k in range(n)]))


def _ids(frames: list[bytes]) -> list[str]:
    return [f.split(b"\n")[0].decode().removeprefix("id: ") for f in frames]


def test_a_batch_becomes_one_frame_per_item_each_id_the_position_after_it() -> None:
    wanted = changes.Wanted(frozenset(changes.TYPES), frozenset(), lambda _: True)
    frames, after = changes.change_frames("instance", 40, _batch("web", 3), Cursor(40, 0, 5), wanted)
    assert _ids(frames) == ["40.1-5", "40.2-5", "41.0-5"] and after == Cursor(41, 0, 5)
    data = json.loads(frames[0].split(b"\n")[2].removeprefix(b"data: "))
    assert data["at"] == "2025-12-01T14:40:00.500Z" and data["state"] == "RUNNING" and data["app"] == "web"
    # Resumed in the middle of that message: only what followed.
    again, _ = changes.change_frames("instance", 40, _batch("web", 3), Cursor(40, 1, 5), wanted)
    assert again == frames[1:]


@pytest.mark.parametrize("types, apps, sees, n", [
    ({"host"}, set(), lambda a: True, 0),
    ({"instance"}, {"db"}, lambda a: True, 0),
    ({"instance"}, {"web"}, lambda a: True, 2),
    ({"instance"}, set(), lambda a: a.startswith("payments-"), 0),     # the token's scope
], ids=["type", "other-app", "this-app", "scope"])
def test_filters(types, apps, sees, n) -> None:
    wanted = changes.Wanted(frozenset(types), frozenset(apps), sees)
    frames, after = changes.change_frames("instance", 7, _batch("web", 2), Cursor(7, 0, 1), wanted)
    assert len(frames) == n and after == Cursor(8, 0, 1)   # the cursor moves on either way
