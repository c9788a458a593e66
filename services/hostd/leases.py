"""hostd's DHCP leases on the host's disk, one small JSON file per instance.

The live leases are in memory (``Network.attached``); this journal is what survives hostd: a
container that dies, or is removed, while no hostd runs takes its interface with it, and the
journal is then the only place that still knows the lease — so the restarted hostd can send
its DHCP RELEASE instead of leaving the address held until it expires.  Written on every
acquire, renewal and adoption (atomic rename), removed on release.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from services.hostd.dhcp import Lease

log = logging.getLogger("noops.hostd.leases")


class LeaseJournal:
    """``directory`` None: remember nothing (pool IPAM has no leases; tests of the pure parts)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory

    def _path(self, instance: str) -> Path | None:
        return self.dir / f"{instance}.json" if self.dir is not None else None

    def record(self, instance: str, lease: Lease, parent: str) -> None:
        path = self._path(instance)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"lease": asdict(lease), "parent": parent}))
            os.replace(tmp, path)
        except OSError as exc:  # the instance runs all the same; only this safety net is missing
            log.warning("lease not journaled", extra={"instance": instance, "dir": str(self.dir),
                                                      "error": exc.strerror or str(exc)})

    def forget(self, instance: str) -> None:
        path = self._path(instance)
        if path is not None:
            path.unlink(missing_ok=True)

    def get(self, instance: str) -> tuple[Lease, str] | None:
        path = self._path(instance)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text())
            return Lease(**data["lease"]), str(data["parent"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable: let the lease expire
            log.warning("unreadable lease record dropped", extra={"instance": instance, "error": str(exc)})
            self.forget(instance)
            return None

    def instances(self) -> list[str]:
        if self.dir is None or not self.dir.exists():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json"))
