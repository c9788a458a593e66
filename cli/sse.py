"""Server-Sent Events framing (the WHATWG rules /v1/events follows): lines in, events out.  Pure."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    type: str              # "instance", "deployment", "host", "endpoints", "reset"...
    data: Any              # the JSON object of the data: lines (a string if it is not JSON)
    id: str | None = None  # for Last-Event-ID


@dataclass
class Parser:
    """Feed it lines without their line ending; it returns an event at each blank line that ends one."""
    last_id: str | None = None
    _type: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment: ": keepalive", ": subscribed"
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # "retry" and unknown fields are ignored, as the rules say

    def _dispatch(self) -> Event | None:
        if self._id is not None:
            self.last_id = self._id
        data, kind = "\n".join(self._data), self._type or "message"
        had_data = bool(self._data)
        self._type, self._data, self._id = "", [], None
        if not had_data and kind == "message":
            return None
        try:
            value: Any = json.loads(data) if data else None
        except ValueError:
            value = data
        return Event(kind, value, self.last_id)
