"""Instance changes as outbox items (libs/announce.py): one message per app, bounded, in order."""
from __future__ import annotations

from libs import announce, messages


def _ev(app: str, k: int) -> messages.InstanceEvent:
    return messages.InstanceEvent(app=app, instance=f"{app}-{k:012x}", host="h1", state="RUNNING", epoch=1,
                                  version=1, at=1.0)


def test_one_message_per_app_in_bounded_chunks_in_order() -> None:
    n = messages.INSTANCE_EVENTS_PER_MESSAGE
    items = announce.instance_events([_ev("a", k) for k in range(n + 1)] + [_ev("b", 0)])
    assert [(s, len(m.items)) for s, _, m in items] == [("noops.instance.a", n), ("noops.instance.a", 1),
                                                        ("noops.instance.b", 1)]
    assert [i.instance for _, _, m in items[:2] for i in m.changes()] == [f"a-{k:012x}" for k in range(n + 1)]
    assert len({msg_id for _, msg_id, _ in items}) == 3
    assert announce.instance_events([]) == []
