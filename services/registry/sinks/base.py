"""The port every sink implements.  Both calls are idempotent: they make the sink hold exactly
what they are given (for ``apply_full``: for every app; for ``update``: for the apps named), so
retrying after a failure or applying the same state twice is harmless.

``observe`` reads the sink itself (never the sink's cache) and may run while the sink's runner
applies; ``forget`` drops what the sink believes it holds and is called only from its runner's
task (``SinkRunner.submit_repair``), so it never races an application."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from libs import messages
from services.registry.sinks.model import Desired


class Sink(Protocol):
    name: str

    async def apply_full(self, desired: Desired) -> None:
        """Converge to ``desired`` for every app; apps it holds that are not in ``desired`` are emptied."""

    async def update(self, changes: Desired) -> None:
        """Converge the apps in ``changes`` (each value is that app's complete set); others untouched."""

    async def observe(self) -> messages.SinkView:
        """What the sink holds right now, read back from it (formats: ``messages.SinkView``).
        Raises when the sink cannot be read."""

    def forget(self, apps: Iterable[str]) -> None:
        """Drop what the sink believes it holds for ``apps``: the next application re-reads the
        sink (or rewrites those apps whole) instead of trusting a cache that drifted."""

    async def close(self) -> None:
        """Release connections; never touches what the sink configured."""
