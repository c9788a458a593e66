"""Instances that ended on this host, so that a late start for one of them is ignored.

Bounded by count and by age: an instance id is never reused, and a start can only come late
by a redelivery (ack wait, nak backoff), so a tombstone older than any redelivery is dead
weight.  Persisted like the lease journal (one small JSON file per instance in the hostd state
directory, atomic rename) so a restarted hostd still ignores the start that was overtaken by its
stop; ``directory`` None keeps them in memory only.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from services.hostd.decide import Tombstone

log = logging.getLogger("noops.hostd.tombstones")


def kept(items: Mapping[str, Tombstone], *, now: float, max_count: int, max_age_s: float) -> dict[str, Tombstone]:
    """The tombstones to keep, oldest first: younger than max_age_s, the newest max_count."""
    young = sorted(((k, t) for k, t in items.items() if now - t.at < max_age_s), key=lambda kv: kv[1].at)
    return dict(young[-max_count:] if max_count > 0 else [])


class Tombstones:
    def __init__(self, directory: Path | None = None, *, max_count: int = 10_000, max_age_s: float = 7 * 86400,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = directory
        self._max_count = max_count
        self._max_age_s = max_age_s
        self._clock = clock
        self._items: dict[str, Tombstone] = {}
        self._load()

    def get(self, instance: str) -> Tombstone | None:
        t = self._items.get(instance)
        if t is not None and self._clock() - t.at >= self._max_age_s:
            self._drop([instance])
            return None
        return t

    def add(self, instance: str, epoch: int, state: str) -> None:
        t = Tombstone(epoch=epoch, state=state, at=self._clock())
        self._items.pop(instance, None)  # re-inserted as the newest
        self._items[instance] = t
        self._write(instance, t)
        if len(self._items) > self._max_count:
            self._prune()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, instance: object) -> bool:
        return isinstance(instance, str) and self.get(instance) is not None

    # ------------------------------------------------------------ disk

    def _prune(self) -> None:
        keep = kept(self._items, now=self._clock(), max_count=self._max_count, max_age_s=self._max_age_s)
        self._drop([k for k in self._items if k not in keep])

    def _drop(self, instances: list[str]) -> None:
        for inst in instances:
            self._items.pop(inst, None)
            if self.dir is not None:
                (self.dir / f"{inst}.json").unlink(missing_ok=True)

    def _write(self, instance: str, t: Tombstone) -> None:
        if self.dir is None:
            return
        path = self.dir / f"{instance}.json"
        tmp = path.with_suffix(".tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"epoch": t.epoch, "state": t.state, "at": t.at}))
            os.replace(tmp, path)
        except OSError as exc:  # kept in memory all the same; only a restart forgets it
            log.warning("tombstone not written", extra={"instance": instance, "dir": str(self.dir),
                                                        "error": exc.strerror or str(exc)})

    def _load(self) -> None:
        if self.dir is None or not self.dir.is_dir():
            return
        found: dict[str, Tombstone] = {}
        for path in self.dir.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                found[path.stem] = Tombstone(epoch=int(data["epoch"]), state=str(data["state"]), at=float(data["at"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable tombstone dropped", extra={"file": path.name, "error": str(exc)})
                path.unlink(missing_ok=True)
        self._items = found
        self._prune()
        self._items = kept(self._items, now=self._clock(), max_count=self._max_count, max_age_s=self._max_age_s)
        log.info("tombstones loaded", extra={"tombstones": len(self._items), "dir": str(self.dir)})
