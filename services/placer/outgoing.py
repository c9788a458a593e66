"""Placements leave the placer as outbox rows, one message per host per commit (chunked), so a
big deploy costs a message per host touched rather than one per instance."""
from __future__ import annotations

import uuid
from collections.abc import Iterable

from libs import messages, subjects


def per_host(placements: Iterable[messages.Placement]) -> list[tuple[str, str, messages.Placements]]:
    """(subject, msg_id, message) outbox items; each host's placements keep their order.  The msg
    id is unique per row: the relay publishing a row again is dropped by JetStream."""
    by_host: dict[str, list[messages.Placement]] = {}
    for p in placements:
        by_host.setdefault(p.host, []).append(p)
    out = []
    n = messages.PLACEMENTS_PER_MESSAGE
    for host, items in by_host.items():
        for k in range(0, len(items), n):
            out.append((subjects.place(host), f"place:{host}:{uuid.uuid4().hex}",
                        messages.Placements(host=host, items=items[k:k + n])))
    return out
