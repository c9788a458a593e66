"""Instance changes as outbox items (docs/events.md): grouped per app, at most
``messages.INSTANCE_EVENTS_PER_MESSAGE`` a message, in order; the same grouping migration
0015's trigger makes for the writers that leave the announcing to PostgreSQL."""
from __future__ import annotations

import uuid
from collections.abc import Iterable

from libs import messages, subjects


def instance_events(events: Iterable[messages.InstanceEvent]) -> list[tuple[str, str, messages.InstanceEvents]]:
    """(subject, msg_id, message) outbox items; the msg id is unique per row (JetStream drops a
    re-publish of the same row)."""
    per_app: dict[str, list[list[messages.InstanceEvent]]] = {}
    for e in events:
        chunks = per_app.setdefault(e.app, [[]])
        if len(chunks[-1]) >= messages.INSTANCE_EVENTS_PER_MESSAGE:
            chunks.append([])
        chunks[-1].append(e)
    return [(subjects.instance_events(app), f"instance:{app}:{uuid.uuid4().hex}",
             messages.InstanceEvents(app=app, items=items))
            for app, chunks in per_app.items() for items in chunks]
