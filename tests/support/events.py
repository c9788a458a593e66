"""The change-event subjects (migration 0015) of what a test made, for its cleanup: the outbox
rows PostgreSQL's triggers wrote for those apps and hosts must go with them."""
from __future__ import annotations

from collections.abc import Iterable

from libs import subjects


def event_subjects(apps: Iterable[str] = (), hosts: Iterable[str] = ()) -> list[str]:
    apps = list(apps)
    return ([subjects.instance_events(a) for a in apps] + [subjects.deployment_events(a) for a in apps]
            + [subjects.host_events(h) for h in hosts])
