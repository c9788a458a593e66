"""Cursors of the instance listings: a key survives the round trip; anything else is refused
with BadCursor (the route answers 422), never an exception of another kind."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

import pytest

from services.gateway import paging


@pytest.mark.parametrize("key", [
    paging.Key(datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=timezone.utc), "web-1-abc"),
    paging.Key(datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone.utc), "a"),
    paging.Key(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), "x" * 76),
], ids=["now", "before-epoch", "far-future"])
def test_round_trip(key: paging.Key) -> None:
    text = paging.encode(key)
    assert len(text) <= paging.MAX_CURSOR and "=" not in text
    assert paging.decode(text) == key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("text", [
    "", "!!!", "A", _b64(b"\xff\xfe"), _b64(b"2.1.a"), _b64(b"1..a"), _b64(b"1.x.a"), _b64(b"1.1."),
    _b64(b"1.1.UPPER"), _b64(b"1.1.a\x00b"), _b64(b"1.--1.a"), _b64(b"1.99999999999999999999.a"),
    _b64(b"1.9999999999999999999.a"), _b64(b"1.-9999999999999999999.a"),
], ids=["empty", "not-base64", "short", "not-ascii", "other-version", "no-time", "time-not-number", "no-id",
        "id-uppercase", "id-nul", "double-minus", "time-too-long", "time-overflows", "time-before-year-1"])
def test_anything_else_is_a_bad_cursor(text: str) -> None:
    with pytest.raises(paging.BadCursor):
        paging.decode(text)
