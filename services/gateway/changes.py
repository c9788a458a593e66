"""/v1/events decided purely: event ids, what a client asked for, and the frames a stream message
becomes.  The I/O is in routes/events.py (and services/gateway/tail.py); docs/events.md is the
contract.

An id names a position in both streams the route replays, NOOPS_EVENTS (instance, deployment,
host: batch messages) and NOOPS_ENDPOINTS (one app's endpoint set a message):

    <events seq>.<item>-<endpoints seq>      e.g. 1234.5-88

"the next frame to send is item 5 of events message 1234, and endpoints message 88".  A frame's
id is the position *after* it, so resuming from it replays exactly what followed.  Two streams
rather than moving endpoints into NOOPS_EVENTS: the registry's consumers of NOOPS_ENDPOINTS (and
its 1-day replay for late sinks) stay as they are."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from libs import messages

TYPES = ("deployment", "instance", "host", "endpoints")
# instance, deployment and host frames are small by construction (ids, states, a reason cut to
# 512 characters: migration 0015); checked, so a frame over it is a bug, not a surprise downstream.
MAX_FRAME_BYTES = 4096
_ID = re.compile(r"^(\d{1,19})\.(\d{1,6})-(\d{1,19})$")


@dataclass(frozen=True)
class Cursor:
    events: int       # next NOOPS_EVENTS sequence
    index: int        # first item of that message not sent yet
    endpoints: int    # next NOOPS_ENDPOINTS sequence

    def id(self) -> str:
        return f"{self.events}.{self.index}-{self.endpoints}"


def parse_id(text: str | None) -> Cursor | None:
    """None for no id or one this gateway never made."""
    m = _ID.fullmatch(text.strip()) if text else None
    return Cursor(int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass(frozen=True)
class StreamSpan:
    """A stream's state: its first and last stored sequence (first = last + 1 when empty)."""
    first: int
    last: int

    def holds_from(self, seq: int) -> bool:
        """Whether everything from ``seq`` on is still stored (``last + 1``: nothing yet)."""
        return max(self.first, 1) <= seq <= self.last + 1


@dataclass(frozen=True)
class Start:
    cursor: Cursor
    reset: str = ""   # why the client must re-read the REST API ("": it need not)


def start(asked: str | None, events: StreamSpan, endpoints: StreamSpan) -> Start:
    """Where a client's stream starts: after its id if both streams still hold what followed
    it, else now, with a reset."""
    now = Cursor(events.last + 1, 0, endpoints.last + 1)
    if not asked:
        return Start(now)
    cursor = parse_id(asked)
    if cursor is None:
        return Start(now, "unknown event id")
    if not (events.holds_from(cursor.events) and endpoints.holds_from(cursor.endpoints)):
        return Start(now, "event id too old: the events after it are no longer kept")
    return Start(cursor)


@dataclass(frozen=True)
class Wanted:
    """What one client receives: these types, of these apps (empty: all), that its token sees."""
    types: frozenset[str]
    apps: frozenset[str]
    sees: Callable[[str], bool]

    def app(self, app: str) -> bool:
        return (not self.apps or app in self.apps) and self.sees(app)

    @property
    def changes(self) -> bool:
        return bool(self.types - {"endpoints"})


def parse_types(values: Iterable[str]) -> frozenset[str]:
    """``type=instance,host`` or repeated; none: all.  Raises ValueError naming an unknown one."""
    asked = {t.strip() for v in values for t in v.split(",") if t.strip()}
    unknown = sorted(asked - set(TYPES))
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(TYPES)}")
    return frozenset(asked or TYPES)


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(cursor: Cursor, event: str, data: bytes) -> bytes:
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (cursor.id().encode(), event.encode(), data)


def reset_frame(cursor: Cursor, why: str) -> bytes:
    return frame(cursor, "reset", json.dumps({"reason": why}).encode())


def _item_data(item: msgspec.Struct) -> bytes:
    d: dict[str, Any] = msgspec.structs.asdict(item)
    d["at"] = rfc3339(d["at"])
    return json.dumps(d, separators=(",", ":")).encode()


def change_frames(kind: str, seq: int, data: bytes, cursor: Cursor, wanted: Wanted) -> tuple[list[bytes], Cursor]:
    """The frames of one NOOPS_EVENTS message (kind: its subject's) from ``cursor.index`` on,
    and the cursor after it.  A message this gateway cannot read is skipped (logged by the
    caller): the cursor moves past it either way."""
    after = Cursor(seq + 1, 0, cursor.endpoints)
    typ = messages.EVENT_TYPES.get(kind)
    if typ is None:
        raise ValueError(f"unknown change-event kind {kind!r}")
    items = messages.decode(data, typ).changes()   # type: ignore[attr-defined]
    start_at = cursor.index if cursor.events == seq else 0
    out = []
    for k in range(start_at, len(items)):
        item = items[k]
        if kind not in wanted.types or (kind != "host" and not wanted.app(item.app)):
            continue
        pos = Cursor(seq, k + 1, cursor.endpoints) if k + 1 < len(items) else after
        f = frame(pos, kind, _item_data(item))
        if len(f) > MAX_FRAME_BYTES:
            raise ValueError(f"{kind} frame of {len(f)} bytes is over MAX_FRAME_BYTES")
        out.append(f)
    return out, after


def endpoints_frame(app: str, seq: int, data: bytes, cursor: Cursor, wanted: Wanted) -> tuple[bytes | None, Cursor]:
    """The registry's noops.endpoints.<app> message as it is (one JSON line), if wanted."""
    after = Cursor(cursor.events, cursor.index, seq + 1)
    if "endpoints" not in wanted.types or not wanted.app(app):
        return None, after
    return frame(after, "endpoints", data.replace(b"\n", b"")), after
