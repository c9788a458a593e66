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


def placed_events(starts: Iterable[tuple[str, str, str, int, int]], at: float
                  ) -> list[tuple[str, str, messages.InstanceEvents]]:
    """(subject, msg_id, message) outbox items announcing placements, (app, instance, host,
    epoch, version) each: one message per app and version, at most
    ``messages.PLACED_PER_MESSAGE`` instances each, in order."""
    chunks: dict[tuple[str, int], list[list[tuple[str, str, int]]]] = {}
    for app, instance, host, epoch, version in starts:
        per = chunks.setdefault((app, version), [[]])
        if len(per[-1]) >= messages.PLACED_PER_MESSAGE:
            per.append([])
        per[-1].append((instance, host, epoch))
    out = []
    for (app, version), per in chunks.items():
        for rows in per:
            instances, hosts, epochs = (list(c) for c in zip(*rows))
            placed = messages.PlacedInstances(version=version, at=at, instances=instances, hosts=hosts, epochs=epochs)
            out.append((subjects.instance_events(app), f"instance:{app}:{uuid.uuid4().hex}",
                        messages.InstanceEvents(app=app, placed=placed)))
    return out
