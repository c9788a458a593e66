"""Placements leave the placer as outbox rows, one message per host per commit (chunked), so a
big deploy costs a message per host touched rather than one per instance."""
from __future__ import annotations

import uuid
from collections.abc import Iterable

from libs import messages, subjects

# A message stays well under NATS's default max_payload (1 MiB) whatever the specs weigh: an
# app's env, labels and health checks ride in every one of its placements.
MAX_MESSAGE_BYTES = 256 * 1024
_OVERHEAD = 256   # a placement's fields besides its spec, generously


def per_host(placements: Iterable[messages.Placement]) -> list[tuple[str, str, messages.Placements]]:
    """(subject, msg_id, message) outbox items; each host's placements keep their order, at most
    ``messages.PLACEMENTS_PER_MESSAGE`` and about ``MAX_MESSAGE_BYTES`` a message.  The msg id is
    unique per row: the relay publishing a row again is dropped by JetStream."""
    spec_bytes: dict[int, int] = {}   # placements of one app share their spec object
    chunks: dict[str, list[list[messages.Placement]]] = {}
    sizes: dict[str, int] = {}
    for p in placements:
        size = spec_bytes.get(id(p.spec))
        if size is None:
            size = spec_bytes[id(p.spec)] = len(messages.encode(p.spec)) + _OVERHEAD
        host_chunks = chunks.setdefault(p.host, [[]])
        current = host_chunks[-1]
        if current and (len(current) >= messages.PLACEMENTS_PER_MESSAGE
                        or sizes[p.host] + size > MAX_MESSAGE_BYTES):
            current = []
            host_chunks.append(current)
            sizes[p.host] = 0
        current.append(p)
        sizes[p.host] = sizes.get(p.host, 0) + size
    return [(subjects.place(host), f"place:{host}:{uuid.uuid4().hex}", messages.Placements(host=host, items=items))
            for host, host_chunks in chunks.items() for items in host_chunks]


def instance_events(events: Iterable[messages.InstanceEvent]) -> list[tuple[str, str, messages.InstanceEvents]]:
    """(subject, msg_id, message) outbox items announcing instance changes: one message per app
    (its changes in order), at most ``messages.INSTANCE_EVENTS_PER_MESSAGE`` changes each, as
    migration 0015's trigger groups the changes it announces."""
    per_app: dict[str, list[list[messages.InstanceEvent]]] = {}
    for e in events:
        chunks = per_app.setdefault(e.app, [[]])
        if len(chunks[-1]) >= messages.INSTANCE_EVENTS_PER_MESSAGE:
            chunks.append([])
        chunks[-1].append(e)
    return [(subjects.instance_events(app), f"instance:{app}:{uuid.uuid4().hex}",
             messages.InstanceEvents(app=app, items=items))
            for app, chunks in per_app.items() for items in chunks]
